#!/usr/bin/env python3
"""Rows per second into PostgreSQL: affluent's sink against psycopg's COPY and pandas' to_sql,
on the same rows, in one run.

    python3 bench/sink_postgres.py BIN [--rows 1000000] [--pg postgres://postgres@127.0.0.1:5432/test]

BIN is a release build of affluent. Needs psycopg, pandas and SQLAlchemy (the bench venv:
`pip install "psycopg[binary]" pandas sqlalchemy`). Each measure is the median of 3 runs, each
into a fresh schema. What each one does:

- affluent (whole): `affluent sinks run` on a new warehouse: reads the Delta table, COPY into a
  staging table, INSERT ... ON CONFLICT into the target with its primary key, progress row, one
  transaction.
- affluent (1% changed): the same after a merge that updated 1% of the rows: only the files the
  merge wrote are read.
- psycopg COPY + upsert: the same SQL work from Python: the CSV's bytes COPY'd into a staging
  table, then INSERT ... ON CONFLICT into a target with a primary key, one transaction.
- psycopg COPY only: the CSV's bytes COPY'd straight into the target (no key, no upsert): the
  lower bound of any loader.
- pandas to_sql: a DataFrame (read before the clock starts) written with `to_sql` over
  SQLAlchemy + psycopg, chunks of 10,000 rows (pandas' `method="multi"`).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import pandas as pd
import psycopg
import sqlalchemy

PROJECT = """
[sources.rows]
type = "csv"
path = "data/*.csv"
columns = {{ id = "int", name = "string", v = "float", n = "int" }}

[tables.rows]
source = "rows"
write = "merge"
primary_key = ["id"]

[sinks.warehouse]
type = "postgres"
url = "${{PG_URL:-}}"
schema = "{schema}"
tables = ["rows"]
"""


def write_csv(path, ids, version):
    with open(path, "w") as f:
        f.write("id,name,v,n\n")
        for i in ids:
            f.write(f"{i},name {i} v{version},{i * 0.25 + version},{i % 1000}\n")


def run(cmd, env=None):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def drop(pg, schema):
    with psycopg.connect(pg, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def count(pg, table):
    with psycopg.connect(pg) as c:
        return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def median_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t = fn()
        times.append(t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    n = args.rows
    pg = args.pg
    tmp = tempfile.mkdtemp(prefix="sink-bench-")
    results = []

    # affluent: a project whose table holds the rows; the sink is off while it loads.
    project = os.path.join(tmp, "p")
    os.makedirs(os.path.join(project, "data"))
    schema = "bench_sink_affluent"
    with open(os.path.join(project, "affluent.toml"), "w") as f:
        f.write(PROJECT.format(schema=schema))
    csv_path = os.path.join(project, "data", "rows0.csv")
    write_csv(csv_path, range(n), 0)
    env = {k: v for k, v in os.environ.items() if k != "PG_URL"}
    run([args.bin, "--project", project, "ingest", "rows"], env)
    with_pg = dict(env, PG_URL=pg)

    def affluent_whole():
        drop(pg, schema)
        t = time.perf_counter()
        run([args.bin, "--project", project, "sinks", "run"], with_pg)
        t = time.perf_counter() - t
        assert count(pg, f"{schema}.rows") == n
        return t

    results.append(("affluent sinks run (whole table, upsert)", n, median_time(affluent_whole)))

    # 1% of the rows changed by a merge: the sink reads the files the merge wrote.
    changed = n // 100
    write_csv(os.path.join(project, "data", "rows1.csv"), range(0, n, 100), 1)
    run([args.bin, "--project", project, "ingest", "rows"], env)
    t = time.perf_counter()
    out = run([args.bin, "--project", project, "sinks", "run"], with_pg)
    t = time.perf_counter() - t
    assert "changes:" in out, out
    with psycopg.connect(pg) as c:
        updated = c.execute(f"SELECT count(*) FROM {schema}.rows WHERE name LIKE '%v1'").fetchone()[0]
    assert updated == changed, (updated, changed)
    results.append((f"affluent sinks run (after {changed:,} rows changed)", changed, t))
    drop(pg, schema)

    # psycopg: the same CSV bytes, COPY into staging and upsert, in one transaction.
    with open(csv_path, "rb") as f:
        data = f.read()
    py_schema = "bench_sink_psycopg"

    def psycopg_upsert():
        drop(pg, py_schema)
        t = time.perf_counter()
        with psycopg.connect(pg) as c:
            c.execute(f"CREATE SCHEMA {py_schema}")
            c.execute(
                f"CREATE TABLE {py_schema}.rows (id bigint PRIMARY KEY, name text, v double precision, n bigint)"
            )
            c.execute(
                f"CREATE TEMP TABLE stage ON COMMIT DROP AS SELECT * FROM {py_schema}.rows WITH NO DATA"
            )
            with c.cursor().copy("COPY stage FROM STDIN (FORMAT csv, HEADER true)") as copy:
                for i in range(0, len(data), 1 << 20):
                    copy.write(data[i : i + (1 << 20)])
            c.execute(
                f"INSERT INTO {py_schema}.rows SELECT * FROM stage ON CONFLICT (id) DO UPDATE "
                "SET name = EXCLUDED.name, v = EXCLUDED.v, n = EXCLUDED.n"
            )
        t = time.perf_counter() - t
        assert count(pg, f"{py_schema}.rows") == n
        return t

    def psycopg_copy():
        drop(pg, py_schema)
        t = time.perf_counter()
        with psycopg.connect(pg) as c:
            c.execute(f"CREATE SCHEMA {py_schema}")
            c.execute(
                f"CREATE TABLE {py_schema}.rows (id bigint, name text, v double precision, n bigint)"
            )
            with c.cursor().copy(f"COPY {py_schema}.rows FROM STDIN (FORMAT csv, HEADER true)") as copy:
                for i in range(0, len(data), 1 << 20):
                    copy.write(data[i : i + (1 << 20)])
        t = time.perf_counter() - t
        assert count(pg, f"{py_schema}.rows") == n
        return t

    results.append(("psycopg COPY into staging + upsert", n, median_time(psycopg_upsert)))
    results.append(("psycopg COPY only (no key)", n, median_time(psycopg_copy)))

    frame = pd.read_csv(csv_path)
    engine = sqlalchemy.create_engine(pg.replace("postgres://", "postgresql+psycopg://", 1))

    def pandas_to_sql():
        drop(pg, py_schema)
        with psycopg.connect(pg, autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {py_schema}")
        t = time.perf_counter()
        frame.to_sql("rows", engine, schema=py_schema, index=False, chunksize=10_000, method="multi")
        t = time.perf_counter() - t
        assert count(pg, f"{py_schema}.rows") == n
        return t

    results.append(("pandas to_sql (method=multi, chunks of 10k)", n, median_time(pandas_to_sql)))
    drop(pg, py_schema)

    base = results[0][1] / results[0][2]
    print(f"rows: {n:,}; median of 3 (the 1% change: one run)\n")
    print("| writer | rows | seconds | rows/s | affluent whole ÷ this |")
    print("|---|---:|---:|---:|---:|")
    for name, rows, secs in results:
        rate = rows / secs
        print(f"| {name} | {rows:,} | {secs:.2f} | {rate:,.0f} | {base / rate:.2f} |")


if __name__ == "__main__":
    main()

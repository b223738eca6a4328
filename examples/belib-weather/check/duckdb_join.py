#!/usr/bin/env python3
"""Checks examples/belib-weather against independent computations.

1. Runs the example offline for one week ending at a fixed hour (`affluent demo --no-run
   --until`), on a copy of the project.
2. Exports `belib_status`, `weather_3h` and the model `belib_weather_daily` to Parquet
   (`affluent export`).
3. Ground truth: every snapshot the simulator served (`affluent simulate belib --export-truth`)
   must be in `belib_status`, once, with the same status, last update and arrondissement.
4. DuckDB recomputes the seed's table from the two exported inputs (its own SQL, below: days in
   Paris time, averages over the day's snapshots, the day's weather from the 3-hour steps, the
   left join) and every row and value must match `belib_weather_daily`.
5. The warehouse: the run writes to a fresh PostgreSQL database (`affluent_belib_check` on the
   server of AFFLUENT_TEST_POSTGRES, default the machine's), `warehouse/views.sql` is applied
   with psql, and `belib.v_arrondissement_daily` must give DuckDB's rows. Skipped with a notice
   when no server answers, except under CI.

Usage: examples/belib-weather/check/duckdb_join.py [AFFLUENT_BINARY]
(default: the debug binary of CARGO_TARGET_DIR or target/). DuckDB is installed with pip in a
virtualenv under ~/.cache/affluent on first use. Exit status 0 when everything matches.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv

DUCKDB = "1.3.2"
# A week across the change to summer time (30 March 2025), ending at Paris midnight: hourly
# snapshots from 2025-03-25 00:00 to 2025-04-01 00:00, Paris time (23 on 30 March).
UNTIL = "2025-04-01"
FIRST_SNAPSHOT = "2025-03-24T23:00:00Z"
AFTER_LAST_SNAPSHOT = "2025-03-31T23:00:00Z"
HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(EXAMPLE))


def python_with_duckdb() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    env = os.path.join(cache, "affluent", f"duckdb-{DUCKDB}")
    python = os.path.join(env, "bin", "python")
    if not os.path.exists(os.path.join(env, ".ready")):
        venv.create(env, with_pip=True, clear=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"duckdb=={DUCKDB}"], check=True)
        open(os.path.join(env, ".ready"), "w").close()
    return python


def binary() -> str:
    if len(sys.argv) > 1:
        return os.path.abspath(sys.argv[1])
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    return os.path.join(target, "debug", "affluent")


def postgres_server():
    """The server's URL without its database, if psql reaches it."""
    url = os.environ.get("AFFLUENT_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/test")
    server = re.sub(r"/[^/]*$", "", url)
    if shutil.which("psql") is None:
        return None, "no psql"
    ok = subprocess.run(["psql", url, "-Atc", "SELECT 1"], capture_output=True, text=True)
    if ok.returncode != 0:
        return None, ok.stderr.strip()
    return server, None


def psql(url, *args):
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-At", *args], capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"psql {' '.join(args)}: {out.stderr}")
    return out.stdout


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, **kw)


def main() -> int:
    if os.environ.get("AFFLUENT_CHECK_INNER") != "1":
        # Re-run under the virtualenv's Python, which has DuckDB.
        env = dict(os.environ, AFFLUENT_CHECK_INNER="1")
        return subprocess.run([python_with_duckdb(), os.path.abspath(__file__), *sys.argv[1:]],
                              env=env).returncode
    import duckdb

    affluent = binary()
    tmp = tempfile.mkdtemp(prefix="affluent-belib-check-")
    server, warehouse = None, None
    try:
        project = os.path.join(tmp, "belib-weather")
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".affluent", "check"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("BELIB_")}
        server, why = postgres_server()
        if server:
            warehouse = f"{server}/affluent_belib_check"
            psql(f"{server}/postgres", "-c", "DROP DATABASE IF EXISTS affluent_belib_check")
            psql(f"{server}/postgres", "-c", "CREATE DATABASE affluent_belib_check")
            env["BELIB_WAREHOUSE_URL"] = warehouse
        elif os.environ.get("CI"):
            print(f"no PostgreSQL for the warehouse check: {why}")
            return 1
        else:
            print(f"notice: the warehouse check is skipped (no PostgreSQL: {why})")
        run([affluent, "--project", project, "demo", "--no-run", "--weeks", "1", "--until", UNTIL],
            env=env)
        files = {}
        for table in ["belib_status", "weather_3h", "belib_weather_daily"]:
            files[table] = os.path.join(tmp, f"{table}.parquet")
            run([affluent, "--project", project, "export", table, "--format", "parquet",
                 "--out", files[table]])
        truth = os.path.join(tmp, "truth.jsonl")
        run([affluent, "simulate", "belib", "--export-truth", truth,
             "--from", FIRST_SNAPSHOT, "--to", AFTER_LAST_SNAPSHOT])

        db = duckdb.connect()
        db.execute("SET TimeZone = 'UTC'")
        for table, path in files.items():
            db.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{path}')")
        failures = []

        # 3. Ground truth: each served record is a row, once.
        db.execute(f"""
            CREATE TABLE truth AS
            SELECT CAST(observed_at AS TIMESTAMPTZ) AS observed_at,
                   record.id_pdc AS id_pdc, record.statut_pdc AS status,
                   CAST(record.last_updated AS TIMESTAMPTZ) AS last_updated,
                   record.arrondissement AS arrondissement
            FROM read_json('{truth}', columns = {{observed_at: 'VARCHAR',
                 record: 'STRUCT(id_pdc VARCHAR, statut_pdc VARCHAR, last_updated VARCHAR, arrondissement VARCHAR)'}})
        """)
        n_truth, = db.execute("SELECT count(*) FROM truth").fetchone()
        n_rows, n_keys = db.execute(
            "SELECT count(*), count(DISTINCT (id_pdc, observed_at)) FROM belib_status").fetchone()
        print(f"ground truth: {n_truth} records served; belib_status: {n_rows} rows, {n_keys} keys")
        if n_rows != n_keys:
            failures.append(f"belib_status has {n_rows - n_keys} duplicate keys")
        missing, = db.execute("""
            SELECT count(*) FROM truth t LEFT JOIN belib_status s
              ON s.id_pdc = t.id_pdc AND s.observed_at = t.observed_at
            WHERE s.id_pdc IS NULL OR s.status IS DISTINCT FROM t.status
               OR s.last_updated IS DISTINCT FROM t.last_updated
               OR s.arrondissement IS DISTINCT FROM t.arrondissement""").fetchone()
        extra, = db.execute("""
            SELECT count(*) FROM belib_status s LEFT JOIN truth t
              ON s.id_pdc = t.id_pdc AND s.observed_at = t.observed_at WHERE t.id_pdc IS NULL""").fetchone()
        if missing or extra or n_truth != n_rows:
            failures.append(f"{missing} served records missing or different in belib_status, {extra} rows never served")

        # 4. The seed's table, computed by DuckDB from the inputs.
        expected = db.execute("""
            WITH s AS (
              SELECT CAST(timezone('Europe/Paris', observed_at) AS DATE) AS date,
                     coalesce(arrondissement, 'unknown') AS arrondissement, observed_at, id_pdc, status
              FROM belib_status),
            b AS (
              SELECT date, arrondissement,
                     count(DISTINCT observed_at) AS snapshots,
                     count(DISTINCT id_pdc) AS points,
                     count(*) / count(DISTINCT observed_at) AS reported,
                     count(*) FILTER (WHERE status = 'Disponible') / count(DISTINCT observed_at) AS available,
                     count(*) FILTER (WHERE status = 'Occupé (en charge)') / count(DISTINCT observed_at) AS occupied,
                     count(*) FILTER (WHERE status = 'Réservé') / count(DISTINCT observed_at) AS reserved,
                     count(*) FILTER (WHERE status NOT IN ('Disponible', 'Occupé (en charge)', 'Réservé'))
                       / count(DISTINCT observed_at) AS out_of_order,
                     count(*) FILTER (WHERE status = 'Disponible') / count(*) AS availability_rate
              FROM s GROUP BY ALL),
            w AS (
              SELECT CAST(timezone('Europe/Paris', time) AS DATE) AS date,
                     min(temperature) AS temp_min, max(temperature) AS temp_max,
                     round(avg(wind_speed), 1) AS wind_avg, max(wind_speed) AS wind_max
              FROM weather_3h GROUP BY ALL),
            -- Rain of a step: the 3 hours before it, counted for the day they began in.
            r AS (
              SELECT CAST(timezone('Europe/Paris', time - INTERVAL 3 HOUR) AS DATE) AS date,
                     round(sum(rain), 1) AS rain_mm
              FROM weather_3h GROUP BY ALL)
            SELECT b.*, w.temp_min, w.temp_max, r.rain_mm, w.wind_avg, w.wind_max
            FROM b LEFT JOIN w USING (date) LEFT JOIN r USING (date)
            ORDER BY date, arrondissement
        """)
        columns = [d[0] for d in expected.description]
        want = expected.fetchall()
        got = db.execute(f"SELECT {', '.join(columns)} FROM belib_weather_daily ORDER BY date, arrondissement").fetchall()
        print(f"belib_weather_daily: {len(got)} rows (DuckDB: {len(want)}), {len(columns)} columns compared")
        if len(got) != len(want):
            failures.append(f"row counts differ: affluent {len(got)}, DuckDB {len(want)}")
        worst = 0.0
        for g, w in zip(got, want):
            for name, a, b in zip(columns, g, w):
                if isinstance(a, float) or isinstance(b, float):
                    if a is None or b is None:
                        same = a is None and b is None
                    else:
                        worst = max(worst, abs(a - b))
                        same = abs(a - b) <= 1e-9 * max(1.0, abs(b))
                else:
                    same = a == b
                if not same:
                    failures.append(f"{g[0]} {g[1]} {name}: affluent {a!r}, DuckDB {b!r}")
        # 5. The warehouse's view against DuckDB's rows.
        if warehouse:
            psql(warehouse, "-q", "-f", os.path.join(EXAMPLE, "warehouse", "views.sql"))
            lines = psql(warehouse, "-F", ",", "-c",
                         "SELECT date, arrondissement, points, available_pct, temp_max FROM belib.v_arrondissement_daily ORDER BY date, arrondissement").split("\n")
            view = [l.split(",") for l in lines if l]
            print(f"belib.v_arrondissement_daily in PostgreSQL: {len(view)} rows")
            if len(view) != len(want):
                failures.append(f"the view has {len(view)} rows, DuckDB {len(want)}")
            i = {c: columns.index(c) for c in ["date", "arrondissement", "points", "availability_rate", "temp_max"]}
            for v, w in zip(view, want):
                same = (v[0] == str(w[i["date"]]) and v[1] == w[i["arrondissement"]]
                        and int(v[2]) == w[i["points"]]
                        and abs(float(v[3]) - 100 * w[i["availability_rate"]]) <= 0.051
                        and (v[4] == "" if w[i["temp_max"]] is None else abs(float(v[4]) - w[i["temp_max"]]) < 1e-9))
                if not same:
                    failures.append(f"view row {v} differs from DuckDB's {w}")
        with_weather = sum(1 for w in want if w[columns.index("temp_max")] is not None)
        days = len({w[0] for w in want})
        print(f"{days} days, {with_weather} rows with the day's weather; largest float difference {worst:.3g}")
        dst = db.execute("""SELECT count(DISTINCT observed_at) FROM belib_status
                             WHERE CAST(timezone('Europe/Paris', observed_at) AS DATE) = DATE '2025-03-30'""").fetchone()[0]
        print(f"30 March 2025 (23 hours in Paris): {dst} snapshots")
        if dst != 23:
            failures.append(f"30 March 2025 has {dst} snapshots, not 23")
        if days != 8 or with_weather == 0:
            failures.append(f"too little to compare: {days} days, {with_weather} rows joined")
        for f in failures[:20]:
            print("MISMATCH:", f)
        if failures:
            print(f"{len(failures)} mismatch(es)")
            return 1
        print("ok: belib_status is what the simulator served; belib_weather_daily equals DuckDB's"
              + ("; the warehouse view gives the same rows" if warehouse else ""))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if warehouse:
            subprocess.run(["psql", f"{server}/postgres", "-qc", "DROP DATABASE IF EXISTS affluent_belib_check"],
                           capture_output=True)


if __name__ == "__main__":
    sys.exit(main())

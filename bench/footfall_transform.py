#!/usr/bin/env python3
"""Seed 004's six-month footfall transform, side by side, whole processes, same machine, same run:

- affluent: `ingest agencies` + `ingest footfall_raw` (land, compress, load Delta tables) +
  `transform footfall_daily` on examples/footfall, from an empty data directory each time;
- shared/bench/footfall_duckdb.py (DuckDB + fuzzywuzzy), the reference result;
- shared/bench/footfall_spark.py (PySpark local[2], the seed's engine).

Usage: bench/footfall_transform.py AFFLUENT_BIN PYTHON [RUNS]   (PYTHON: a venv with duckdb,
fuzzywuzzy, python-Levenshtein, pandas, pyarrow, pyspark). Prints medians and ratios.
ENGINES=affluent,duckdb runs only those (PySpark needs Java and a large download).
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = os.path.join(os.path.dirname(root), "shared")
raw = os.path.join(shared, "fixtures/footfall/raw")
agencies = os.path.join(shared, "fixtures/footfall/agencies.csv")
binary, python = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 5


def timed(cmds, env=None):
    start = time.perf_counter()
    for cmd in cmds:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def affluent():
    work = tempfile.mkdtemp()
    project = os.path.join(work, "p")
    shutil.copytree(os.path.join(root, "examples/footfall"), project,
                    ignore=shutil.ignore_patterns(".affluent", "raw", "expected"))
    env = dict(os.environ, FOOTFALL_RAW_DIR=raw)
    a = [binary, "--project", project]
    t = timed([a + ["ingest", "agencies"], a + ["ingest", "footfall_raw"],
               a + ["transform", "footfall_events", "footfall_daily"]], env)
    shutil.rmtree(work)
    return t


def reference(script, out_suffix):
    work = tempfile.mkdtemp()
    out = os.path.join(work, "out" + out_suffix)
    env = dict(os.environ, PYSPARK_PYTHON=python)
    t = timed([[python, os.path.join(shared, "bench", script), raw, agencies, out]], env)
    shutil.rmtree(work)
    return t


engines = os.environ.get("ENGINES", "affluent,duckdb,spark").split(",")
results = {}
for name, fn in [("affluent", affluent),
                 ("duckdb", lambda: reference("footfall_duckdb.py", ".parquet")),
                 ("spark", lambda: reference("footfall_spark.py", ""))]:
    if name not in engines:
        continue
    times = [fn() for _ in range(runs)]
    results[name] = statistics.median(times)
    print(f"{name:9} median {results[name]:.3f} s over {runs} runs: " + ", ".join(f"{t:.3f}" for t in times))
for name in [e for e in ("duckdb", "spark") if e in results]:
    ratio = results[name] / results["affluent"]
    print(f"{name} time / affluent time: {ratio:.2f} ({'affluent' if ratio > 1 else name} faster)")

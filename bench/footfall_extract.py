#!/usr/bin/env python3
"""Seed 004's extraction, one month from the footfall simulator, side by side, whole processes:

- reference: shared/bench/footfall_extract_sequential.py (one GET per hour x agency x counter,
  sequential, rows appended to a CSV), pointed at the simulator;
- affluent ingest: `affluent ingest footfall_api --from --to --no-load` on examples/footfall: the
  same requests through the REST source (fan-out agencies x counters x hours, 8 in flight),
  every response landed compressed, atomically (fsync) before it is parsed;
- affluent backfill: `affluent backfill footfall_api` over the month with daily intervals: the
  same requests, plus the loads into the Delta table and the models (footfall_daily, monthly).

All three hit the same simulator (`affluent simulate footfall`, started once), from an empty data
directory each run.
Usage: bench/footfall_extract.py AFFLUENT_BIN PYTHON [RUNS]   (PYTHON: with `requests`)
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
shared = os.path.join(os.path.dirname(root), "shared")
agencies = os.path.join(shared, "fixtures/footfall/agencies.csv")
binary, python = sys.argv[1], sys.argv[2]
runs = int(sys.argv[3]) if len(sys.argv) > 3 else 3
start, end, days = "2024-03-01", "2024-04-01", 31

sim = subprocess.Popen([binary, "simulate", "footfall", "--port", "0", "--seed", "4"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
url = sim.stdout.readline().strip()


def timed(cmd, env=None):
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def project(daily):
    work = tempfile.mkdtemp()
    p = os.path.join(work, "p")
    shutil.copytree(os.path.join(root, "examples/footfall"), p,
                    ignore=shutil.ignore_patterns(".affluent", "raw", "expected"))
    os.makedirs(os.path.join(p, "raw"))
    if daily:
        toml = os.path.join(p, "affluent.toml")
        text = open(toml).read().replace('every = "1h"\nstart_date = "-8w"', 'every = "1d"')
        open(toml, "w").write(text)
    return work, p


def affluent_ingest():
    work, p = project(False)
    env = dict(os.environ, FOOTFALL_API_URL=url)
    t = timed([binary, "--project", p, "ingest", "footfall_api", "--from", start, "--to", end, "--no-load"], env)
    shutil.rmtree(work)
    return t


def affluent_backfill():
    work, p = project(True)
    env = dict(os.environ, FOOTFALL_API_URL=url)
    t0 = time.perf_counter()
    subprocess.run([binary, "--project", p, "ingest", "agencies"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    subprocess.run([binary, "--project", p, "backfill", "footfall_api", "--from", start, "--to", end],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    t = time.perf_counter() - t0
    shutil.rmtree(work)
    return t


def reference():
    work = tempfile.mkdtemp()
    t = timed([python, os.path.join(shared, "bench/footfall_extract_sequential.py"), url, agencies,
               start, str(days), os.path.join(work, "out.csv")])
    shutil.rmtree(work)
    return t


try:
    results = {}
    for name, fn in [("reference", reference), ("ingest", affluent_ingest), ("backfill", affluent_backfill)]:
        times = [fn() for _ in range(runs)]
        results[name] = statistics.median(times)
        print(f"{name:10} median {results[name]:.2f} s over {runs} runs: " + ", ".join(f"{t:.2f}" for t in times))
    for name in ("ingest", "backfill"):
        print(f"reference time / affluent {name} time: {results['reference'] / results[name]:.2f}")
finally:
    sim.kill()

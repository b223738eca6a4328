#!/usr/bin/env python3
"""Event-time windows against DuckDB (BENCHMARKS.md, "Event-time windows").

Reads what `cargo run --release -p affluent-streams --example window_replay -- DAYS DIR` wrote
(DIR/events.csv: station reports in arrival order; DIR/windows.csv: the engine's 3-minute
windows), computes the same windows with one DuckDB query over the whole replay, and compares
them row for row: per station and window, the averages of mechanical bikes, e-bikes and free
docks, the events taken, the late ones and the duplicates.

The query states the engine's definitions in SQL: arrival order is the file's; the watermark
an event meets is the greatest event time before it minus 2 minutes; a (station, time) seen
before is a duplicate; an event whose window ended 15 minutes or more before its watermark is
dropped; an event older than its watermark is late.

    python3 bench/stream_windows.py DIR
"""
import sys
import time

import duckdb

SIZE, DELAY, LATENESS = 180_000, 120_000, 900_000

QUERY = f"""
with e as (
    select *, row_number() over () as arrival from read_csv('{{dir}}/events.csv', header = true)
), m as (
    select *,
        max(event_ms) over (order by arrival rows between unbounded preceding and 1 preceding) - {DELAY} as wm,
        row_number() over (partition by key, event_ms order by arrival) as nth,
        (event_ms // {SIZE}) * {SIZE} as window_start
    from e
), c as (
    select *, wm is not null and window_start + {SIZE} + {LATENESS} <= wm as window_final
    from m
)
select key, window_start,
    avg(mechanical) filter (where nth = 1) as mechanical,
    avg(ebike) filter (where nth = 1) as ebike,
    avg(docks) filter (where nth = 1) as docks,
    count(*) filter (where nth = 1) as events,
    count(*) filter (where nth = 1 and event_ms < wm) as late,
    count(*) filter (where nth > 1) as duplicates
from c
where not window_final
group by key, window_start
having count(*) filter (where nth = 1) > 0
order by key, window_start
"""


def main():
    folder = sys.argv[1]
    con = duckdb.connect()
    started = time.perf_counter()
    rows = con.execute(QUERY.format(dir=folder)).fetchall()
    elapsed = time.perf_counter() - started
    events = con.execute(f"select count(*) from read_csv('{folder}/events.csv', header = true)").fetchone()[0]
    engine = con.execute(
        f"select key, window_start_ms, mechanical, ebike, docks, events, late, duplicates "
        f"from read_csv('{folder}/windows.csv', header = true, types = {{'key': 'VARCHAR'}}) order by key, window_start_ms"
    ).fetchall()
    threads = con.execute("select current_setting('threads')").fetchone()[0]
    print(f"duckdb: {events} events in {elapsed:.3f} s = {events / elapsed:.0f} events/s (read_csv and the query; {duckdb.__version__}, {threads} threads)")
    if len(rows) != len(engine):
        sys.exit(f"MISMATCH: duckdb {len(rows)} windows, engine {len(engine)}")
    for a, b in zip(rows, engine):
        same = str(a[0]) == str(b[0]) and a[1] == b[1] and all(abs(x - y) < 1e-9 for x, y in zip(a[2:5], b[2:5])) and tuple(a[5:]) == tuple(b[5:])
        if not same:
            sys.exit(f"MISMATCH: duckdb {a} engine {b}")
    print(f"the engine's {len(engine)} windows equal DuckDB's, row for row")


if __name__ == "__main__":
    main()

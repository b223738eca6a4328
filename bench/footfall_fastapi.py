#!/usr/bin/env python3
"""Seed 004's visitor-counter API as the seed serves it (FastAPI + uvicorn, one worker), speaking
the contract of `affluent simulate footfall` (crates/affluent-simulate/src/footfall.rs, lib.rs):

  GET /get_visitor_count?date_time=YYYY-MM-DD HH:MM&agency_name=NAME&counter_id=N&count_unit=visitors
    200 {"agency_name", "date_time": "YYYY-MM-DD HH:MM", "visitor_count", "unit": "visitors",
         "counter_id"}   (counter_id left out when none was asked for: the agency's total)
    -1 when closed (Saturday, Sunday, hours other than 9-11 and 13-17), -10 for a broken counter
    404 {"detail": "..."} for a bad date, an unknown agency, counter or unit
    422 {"detail": "..."} for a missing date_time or agency_name, a counter_id that is no integer
  GET /  the service, its endpoint and its agencies

The model is the simulator's, port for port (agency base traffic from its agencies.csv, weekday
multipliers, a 15 % normal draw per day, counter splits, hourly shares, broken and badly counting
counter-days), drawn from the same hashes: with one seed both servers give the same numbers.
Usage: footfall_fastapi.py PORT [SEED]   (SEED: 4 by default, as `affluent simulate footfall`)
"""
import csv
import json
import math
import os
import sys
from datetime import datetime

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

HERE = os.path.dirname(os.path.abspath(__file__))
AGENCIES_CSV = os.path.join(HERE, "..", "crates", "affluent-simulate", "src", "agencies.csv")
with open(AGENCIES_CSV, newline="") as f:
    AGENCIES = {r["agency_name"]: (float(r["base_traffic"]), int(r["counter_number"]))
                for r in csv.DictReader(f)}

CLOSED, BROKEN = -1, -10
WEEKDAY_MULTIPLIER = [1.0, 1.25, 1.3, 1.6, 1.8, None, None]  # Monday .. Sunday
HOUR_SHARE = {9: 0.20, 10: 0.25, 11: 0.25, 13: 0.10, 14: 0.10, 15: 0.02, 16: 0.03, 17: 0.05}
M64 = (1 << 64) - 1


def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def draw_hash(*parts):
    h = 0x5EED
    for p in parts:
        h = splitmix(h ^ splitmix(p))
    return h


def name_key(name):  # FNV-1a over the name's bytes
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def uniform(h):  # a uniform draw in (0, 1)
    return ((h >> 11) + 0.5) / (1 << 53)


def counter_split(counters, counter):
    if counters == 1:
        return 1.0
    if counters == 2:
        return 0.8 if counter == 0 else 0.2
    if counters == 3:
        return 0.2 if counter == 2 else 0.4
    first = (counters + 1) // 2  # more counters than the seed knows: 80 % over the first half
    return 0.8 / first if counter < first else 0.2 / (counters - first)


def count(seed, name, at, counter):
    """One counter's reading for one hour."""
    base, counters = AGENCIES[name]
    key, day = name_key(name), at.year * 400 + at.timetuple().tm_yday
    health = uniform(draw_hash(seed, key, day, 2, counter))
    if health < 0.005:
        return BROKEN  # broken the whole day
    multiplier, share = WEEKDAY_MULTIPLIER[at.weekday()], HOUR_SHARE.get(at.hour)
    if multiplier is None or share is None:
        return CLOSED
    h = draw_hash(seed, key, day, 1)
    normal = math.sqrt(-2.0 * math.log(uniform(h))) * math.cos(2.0 * math.pi * uniform(splitmix(h)))
    daily = max(base * multiplier * (1.0 + 0.15 * normal), 0.0)
    x = daily * counter_split(counters, counter) * share * (0.2 if health < 0.02 else 1.0)
    whole = math.floor(x)
    return whole + 1 if x - whole >= 0.5 else whole  # rounded half away from zero, as Rust does


def parse_stamp(text):
    for fmt in ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d_%H"):
        try:
            return datetime.strptime(text.strip(), fmt)
        except ValueError:
            pass
    return None


def quoted(s):
    return json.dumps(s, ensure_ascii=False)


def detail(status, text):
    return JSONResponse(status_code=status, content={"detail": text})


SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 4
app = FastAPI(title="footfall (seed 004's visitor counter API)")


@app.get("/")
async def index():
    return {
        "service": "FastAPI footfall server (seed 004's visitor counter API)",
        "endpoint": "/get_visitor_count?date_time=YYYY-MM-DD HH:MM&agency_name=NAME&counter_id=N"
                    "&count_unit=visitors",
        "agencies": [{"agency_name": n, "counters": c} for n, (_, c) in AGENCIES.items()],
    }


@app.get("/get_visitor_count")
async def get_visitor_count(date_time: str | None = None, agency_name: str | None = None,
                            counter_id: str | None = None, count_unit: str | None = None):
    if date_time is None:
        return detail(422, "query parameter date_time is required")
    if agency_name is None:
        return detail(422, "query parameter agency_name is required")
    try:
        counter = None if counter_id is None else int(counter_id.strip())
    except ValueError:
        return detail(422, "counter_id must be an integer")
    at = parse_stamp(date_time)
    if at is None:
        return detail(404, f"date_time {quoted(date_time)} is not a date and time in the format "
                           "YYYY-MM-DD HH:MM")
    if agency_name not in AGENCIES:
        return detail(404, f"unknown agency {quoted(agency_name)}")
    if count_unit is not None and count_unit != "visitors":
        return detail(404, f"unknown count_unit {quoted(count_unit)}: only \"visitors\" is counted")
    counters = AGENCIES[agency_name][1]
    reading = {"agency_name": agency_name, "date_time": at.strftime("%Y-%m-%d %H:%M")}
    if counter is None or counter == -1:
        # The agency's total: closed if the branch is, else the working counters' sum.
        counts = [count(SEED, agency_name, at, c) for c in range(counters)]
        if all(c in (CLOSED, BROKEN) for c in counts) and CLOSED in counts:
            reading["visitor_count"] = CLOSED
        else:
            reading["visitor_count"] = sum(c for c in counts if c >= 0)
        reading["unit"] = "visitors"
    elif 0 <= counter < counters:
        reading["visitor_count"] = count(SEED, agency_name, at, counter)
        reading["unit"] = "visitors"
        reading["counter_id"] = counter
    else:
        return detail(404, f"agency {agency_name} has counters 0 to {max(counters - 1, 0)}, "
                           f"not {counter}")
    return reading


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    print(f"http://127.0.0.1:{port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, access_log=False,
                log_level="warning")

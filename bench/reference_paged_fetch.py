#!/usr/bin/env python3
"""Reference for the landing benchmark: what a cron + Python script does with a paged World
Bank-shaped API. Standard library only: urllib GET per page, json.loads, records counted, the raw
body written to a file per page. Usage: reference_paged_fetch.py BASE_URL PER_PAGE OUT_DIR"""
import json, os, sys, time, urllib.request

base, per_page, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
os.makedirs(out, exist_ok=True)
t0, page, pages, records = time.time(), 1, 1, 0
while page <= pages:
    with urllib.request.urlopen(f"{base}?format=json&per_page={per_page}&page={page}") as r:
        body = r.read()
    doc = json.loads(body)
    pages = doc[0]["pages"]
    records += len(doc[1])
    with open(os.path.join(out, f"page_{page}.json"), "wb") as f:
        f.write(body)
    page += 1
print(f"{records} records in {time.time() - t0:.3f} s")

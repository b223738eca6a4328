#!/usr/bin/env python3
"""Writes the benchmarks' visits CSV: N rows of (day, agency, counter, visits), fixed seed.

    bench/visits_csv.py PATH N
"""
import datetime
import random
import sys

path, n = sys.argv[1], int(sys.argv[2])
start = datetime.date(2020, 1, 1)
rnd = random.Random(4)
with open(path, "w") as f:
    f.write("day,agency,counter,visits\n")
    for i in range(n):
        day = start + datetime.timedelta(days=(i // 150) % 1461)
        f.write(f"{day},agency_{i % 50},{i % 3},{rnd.randint(0, 500)}\n")

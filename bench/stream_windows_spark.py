#!/usr/bin/env python3
"""Event-time windows with Spark Structured Streaming, local[2] (BENCHMARKS.md, "Event-time windows").

Reads what `cargo run --release -p affluent-streams --example window_replay -- DAYS DIR` wrote
(DIR/events.csv: station reports in arrival order; DIR/windows.csv: the engine's windows), and
runs seed 003's online job as the seed would, in Spark Structured Streaming: the reports arrive
as files of an hour of polls each (one micro-batch per file, in arrival order), and per station
3-minute tumbling windows of the average mechanical bikes, e-bikes and free docks are kept with
a watermark and written in append mode once final.

The definitions are the engine's as far as Spark has them: the watermark trails the greatest
event time by the delay plus the allowed lateness (2 + 15 minutes: Spark has one bound, past
which a window is emitted and its late events dropped), repeats of a (station, time) are
dropped (`dropDuplicatesWithinWatermark`). Spark moves its watermark between micro-batches, not
between events, so a few windows at the margins differ; the script counts the windows both
wrote and how many of those agree.

Timed: from the query's start to the end of its last micro-batch (`availableNow`), the files
already split (not timed). Events per second are over every report read.

    python3 -m venv /tmp/refbench && /tmp/refbench/bin/pip install pyspark   # Java 17 needed
    /tmp/refbench/bin/python bench/stream_windows_spark.py DIR
"""
import csv
import os
import shutil
import sys
import time

ROWS_PER_FILE = 1471 * 60  # an hour of polls of every station


def split(folder):
    """DIR/events.csv into DIR/spark/in/NNNNN.csv, an hour of polls each, in arrival order."""
    target = os.path.join(folder, "spark", "in")
    if os.path.isdir(target):
        shutil.rmtree(target)
    os.makedirs(target)
    events = 0
    with open(os.path.join(folder, "events.csv"), newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        part, out, writer, rows = 0, None, None, 0
        for row in reader:
            if writer is None or rows == ROWS_PER_FILE:
                if out:
                    out.close()
                out = open(os.path.join(target, f"{part:05d}.csv"), "w", newline="")
                writer = csv.writer(out)
                writer.writerow(header)
                part, rows = part + 1, 0
            writer.writerow(row)
            rows += 1
            events += 1
        if out:
            out.close()
    # Files are listed by modification time: keep arrival order.
    for i, name in enumerate(sorted(os.listdir(target))):
        path = os.path.join(target, name)
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    return target, events, part


def main():
    folder = sys.argv[1]
    source, events, files = split(folder)
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("velib-windows")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    out = os.path.join(folder, "spark", "out")
    checkpoint = os.path.join(folder, "spark", "checkpoint")
    for d in (out, checkpoint):
        if os.path.isdir(d):
            shutil.rmtree(d)
    reports = (
        spark.readStream.schema("key STRING, event_ms LONG, mechanical DOUBLE, ebike DOUBLE, docks DOUBLE")
        .option("header", True)
        .option("maxFilesPerTrigger", 1)
        .csv(source)
        .withColumn("t", F.timestamp_millis("event_ms"))
        .withWatermark("t", "17 minutes")
        .dropDuplicatesWithinWatermark(["key", "t"])
    )
    windows = reports.groupBy("key", F.window("t", "3 minutes")).agg(
        F.avg("mechanical").alias("mechanical"),
        F.avg("ebike").alias("ebike"),
        F.avg("docks").alias("docks"),
        F.count("*").alias("events"),
    )
    started = time.perf_counter()
    query = (
        windows.select(
            "key",
            (F.unix_timestamp(F.col("window.start")) * 1000).alias("window_start_ms"),
            "mechanical",
            "ebike",
            "docks",
            "events",
        )
        .writeStream.outputMode("append")
        .format("parquet")
        .option("path", out)
        .option("checkpointLocation", checkpoint)
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    elapsed = time.perf_counter() - started
    print(
        f"spark structured streaming {spark.version}, local[2]: {events} events in {files} micro-batches, "
        f"{elapsed:.1f} s = {events / elapsed:.0f} events/s"
    )
    got = {
        (r["key"], r["window_start_ms"]): (r["mechanical"], r["ebike"], r["docks"], r["events"])
        for r in spark.read.parquet(out).collect()
    }
    engine = {}
    with open(os.path.join(folder, "windows.csv"), newline="") as f:
        for r in csv.DictReader(f):
            if r.get("final", "true") in ("true", "1"):
                engine[(r["key"], int(r["window_start_ms"]))] = (
                    float(r["mechanical"]),
                    float(r["ebike"]),
                    float(r["docks"]),
                    int(r["events"]),
                )
    both = set(got) & set(engine)
    same = sum(
        1
        for k in both
        if got[k][3] == engine[k][3] and all(abs(a - b) < 1e-9 for a, b in zip(got[k][:3], engine[k][:3]))
    )
    print(
        f"spark wrote {len(got)} final windows, the engine {len(engine)}; {len(both)} in both, "
        f"{same} of those equal ({100 * same / max(len(both), 1):.2f} %)"
    )
    spark.stop()


if __name__ == "__main__":
    main()

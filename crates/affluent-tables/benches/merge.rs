//! Merge and model benchmark: rows/s merged into a 1M-row Delta table by batches of 10k and
//! 100k records (each batch a landing entry, loaded through the whole path: parse, map, dedupe,
//! Delta merge, commit), and the time of a SQL model over the 1M rows. Peak memory is the rise
//! of the process's high-water mark during each step. Run: `cargo bench -p affluent-tables
//! --bench merge` (ROWS=1000000 by default). Nothing here is asserted.

#![allow(clippy::unwrap_used)] // a benchmark fails loudly

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use affluent_config::Environment;
use affluent_landing::NewEntry;
use affluent_sources::Connectors;
use affluent_tables::{LoadScope, Warehouse};

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn records(ids: impl Iterator<Item = u64>, version: u64) -> Vec<u8> {
    let mut out = String::from("[");
    for (i, id) in ids.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"id":{id},"station":"s{}","bikes":{},"version":{version},"at":"2024-05-28T20:{:02}:00Z"}}"#,
            id % 1500,
            (id * 7 + version) % 40,
            id % 60
        ));
    }
    out.push(']');
    out.into_bytes()
}

fn land(w: &Warehouse, body: &[u8]) {
    w.landing()
        .write(
            NewEntry {
                source: "rows".into(),
                run_id: "bench".into(),
                kind: "http".into(),
                url: "http://127.0.0.1/rows".into(),
                method: Some("GET".into()),
                request_body: None,
                vars: BTreeMap::new(),
                page: 0,
                status: 200,
                headers: BTreeMap::new(),
                fetched_at: jiff::Timestamp::now(),
                interval: None,
            },
            body,
        )
        .unwrap();
}

#[tokio::main]
async fn main() {
    let rows: u64 = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        r#"
[sources.rows]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[tables.stations]
source = "rows"
write = "merge"
primary_key = ["id"]
[tables.stations.columns]
id = { path = "id", type = "int" }
station = "station"
bikes = { path = "bikes", type = "int" }
version = { path = "version", type = "int" }
at = { path = "at", type = "timestamp" }

[models.per_station]
sql = """
SELECT station, count(*) AS n, avg(bikes) AS avg_bikes, max(at) AS last_at,
       rank() OVER (ORDER BY avg(bikes) DESC) AS rank
FROM stations GROUP BY station
"""
"#,
    )
    .unwrap();
    let project =
        affluent_config::load_with_env(dir.path(), &Environment::from_map(Default::default()))
            .unwrap();
    let w = Warehouse::new(Arc::new(Connectors::new(project).unwrap()));

    // The initial table: `rows` records in entries of 100k.
    let step = 100_000.min(rows);
    let mut start = 0;
    while start < rows {
        land(&w, &records(start..(start + step).min(rows), 0));
        start += step;
    }
    reset_peak();
    let t = Instant::now();
    let r = w.load_table("stations", &LoadScope::Pending).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "initial load: {} rows in {secs:.2} s, {:.0} rows/s, peak {:.0} MiB",
        r.loaded,
        r.loaded as f64 / secs,
        peak_mib()
    );

    for batch in [10_000u64, 100_000] {
        let mut times = Vec::new();
        let mut peak = 0f64;
        for round in 0..5u64 {
            // Half the batch updates existing keys, half inserts new ones.
            let half = batch / 2;
            let base = rows + round * batch + batch * 10;
            let ids = (round * half..round * half + half).chain(base..base + half);
            land(&w, &records(ids, round + 1));
            reset_peak();
            let t = Instant::now();
            let r = w.load_table("stations", &LoadScope::Pending).await.unwrap();
            times.push(t.elapsed().as_secs_f64());
            peak = peak.max(peak_mib());
            assert_eq!(r.loaded + r.merged, batch, "{r:?}");
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        println!(
            "merge batches of {batch}: median {median:.3} s, {:.0} rows/s, peak {peak:.0} MiB",
            batch as f64 / median
        );
    }

    reset_peak();
    let t = Instant::now();
    let r = w.transform(&[], None).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let total = w.query("SELECT count(*) FROM stations").await.unwrap();
    println!(
        "model over {} rows: {secs:.2} s ({} output rows), peak {:.0} MiB",
        datafusion::arrow::util::pretty::pretty_format_batches(&total)
            .unwrap()
            .to_string()
            .lines()
            .nth(3)
            .unwrap_or("")
            .trim_matches(|c: char| c == '|' || c == ' '),
        r[0].rows,
        peak_mib()
    );
}

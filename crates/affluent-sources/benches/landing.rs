//! Landing benchmark: records/s fetched, landed (zstd, atomic) and parsed from a large paged
//! World Bank-shaped response served on 127.0.0.1, beside a standard-library Python script doing
//! the same fetch + parse + raw write (`bench/reference_paged_fetch.py`), in the same run.
//!
//! `cargo bench -p affluent-sources --bench landing` (env: RECORDS, default 1000000; PER_PAGE,
//! default 50000).

#![allow(clippy::unwrap_used)] // a benchmark fails loudly

use std::sync::Arc;
use std::time::Instant;

use affluent_sources::{Connectors, IngestOptions};
use axum::extract::{Query, State};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resets the peak resident set size of this process (Linux `clear_refs`).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn rss_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    let total = env_usize("RECORDS", 1_000_000);
    let per_page = env_usize("PER_PAGE", 50_000);
    let pages = total.div_ceil(per_page);
    // Pages are made once, up front, as text: the server only copies bytes.
    let bodies: Vec<Vec<u8>> = (0..pages)
        .map(|p| {
            let n = per_page.min(total - p * per_page);
            let mut body = format!(
                r#"[{{"page":{},"pages":{pages},"per_page":{per_page},"total":{total}}},["#,
                p + 1
            );
            for i in 0..n {
                let k = p * per_page + i;
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&format!(
                    r#"{{"indicator":{{"id":"NY.GDP.MKTP.CD","value":"GDP (current US$)"}},"country":{{"id":"C{c}","value":"Country {c}"}},"countryiso3code":"C{c:02}","date":"{d}","value":{v},"unit":"","obs_status":"","decimal":0}}"#,
                    c = k % 250,
                    d = 1960 + k / 250 % 65,
                    v = k as f64 * 1234.5,
                ));
            }
            body.push_str("]]");
            body.into_bytes()
        })
        .collect();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    let bodies = Arc::new(bodies);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let app = axum::Router::new()
            .route(
                "/v2/country/all/indicator/NY.GDP.MKTP.CD",
                axum::routing::get(
                    |State(b): State<Arc<Vec<Vec<u8>>>>, Query(q): Query<std::collections::HashMap<String, String>>| async move {
                        let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                        ([("content-type", "application/json")], b[page - 1].clone())
                    },
                ),
            )
            .with_state(bodies);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("affluent.toml"),
            format!(
                "[sources.wb]\ntype = \"rest\"\nconcurrency = 1\nclient.base_url = \"http://{addr}/v2/country/all/indicator/NY.GDP.MKTP.CD\"\nendpoint.params = {{ format = \"json\", per_page = {per_page} }}\nendpoint.data_selector = \"[1]\"\nendpoint.paginator = {{ type = \"page_number\", base_page = 1, total_path = \"[0].pages\" }}\n"
            ),
        )
        .unwrap();
        let project = affluent_config::load(dir.path()).unwrap();
        let connectors = Connectors::new(project).unwrap();
        let rss_before = rss_mib("VmRSS:");
        reset_peak_rss();
        let started = Instant::now();
        let summary = connectors.ingest("wb", &IngestOptions::default()).await.unwrap();
        let affluent_secs = started.elapsed().as_secs_f64();
        let peak_during = rss_mib("VmHWM:");
        assert_eq!(summary.records as usize, total, "{:?}", summary.errors);
        let stored: u64 = connectors.landing().list("wb").unwrap().iter().map(|e| e.stored_bytes).sum();

        let out = tempfile::tempdir().unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/reference_paged_fetch.py");
        let started = Instant::now();
        let py = tokio::process::Command::new("python3")
            .arg(script)
            .arg(format!("http://{addr}/v2/country/all/indicator/NY.GDP.MKTP.CD"))
            .arg(per_page.to_string())
            .arg(out.path())
            .output()
            .await;
        let python_secs = started.elapsed().as_secs_f64();

        println!("landing benchmark: {total} records in {pages} pages, {:.1} MiB of JSON", bytes as f64 / 1048576.0);
        println!(
            "affluent: {affluent_secs:.3} s, {:.0} records/s, {:.1} MiB/s; landed {:.1} MiB zstd ({:.1}x smaller); peak RSS during the ingest {:.0} MiB, of which {:.0} MiB were there before it (the server's pre-built pages): {:.0} MiB for the ingest",
            total as f64 / affluent_secs,
            bytes as f64 / 1048576.0 / affluent_secs,
            stored as f64 / 1048576.0,
            bytes as f64 / stored as f64,
            peak_during,
            rss_before,
            peak_during - rss_before,
        );
        match py {
            Ok(o) if o.status.success() => {
                println!(
                    "python urllib+json reference: {python_secs:.3} s, {:.0} records/s ({})",
                    total as f64 / python_secs,
                    String::from_utf8_lossy(&o.stdout).trim()
                );
                println!("ratio: affluent is {:.2}x the reference's throughput", python_secs / affluent_secs);
            }
            Ok(o) => println!("python reference failed: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => println!("python reference not run: {e}"),
        }
    });
}

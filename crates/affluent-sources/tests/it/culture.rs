//! The culture example (seed 000) as shipped: its cassettes replayed with exact record counts,
//! and its sources' limits held against a local server that counts arrivals (Ticketmaster's 5
//! a second and its daily quota, football-data.org's 10 a minute); public-apis' football-data
//! source never asks for a `dateTo` before its `dateFrom`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use affluent_config::Environment;
use affluent_sources::{Connectors, IngestOptions, RunSummary};
use serde_json::json;

use crate::support::*;

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// A copy of the culture example in a temp dir (its data stays out of the repository), with
/// `edit` applied to its project file.
fn culture(edit: impl Fn(String) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = example("culture");
    for file in [
        "countries.csv",
        "geo/world.geojson",
        "cassettes/events.json",
        "cassettes/matches.json",
        "cassettes/economy.json",
    ] {
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(src.join(file), to).unwrap();
    }
    let text = std::fs::read_to_string(src.join("affluent.toml")).unwrap();
    std::fs::write(dir.path().join("affluent.toml"), edit(text)).unwrap();
    dir
}

fn load(dir: &Path, env: &[(&str, &str)]) -> affluent_config::Project {
    let env = Environment::from_map(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    affluent_config::load_with_env(dir, &env).unwrap_or_else(|e| panic!("{e}"))
}

async fn tick(c: &Connectors, source: &str, end: &str) -> RunSummary {
    let end: jiff::Timestamp = end.parse().unwrap();
    let start = end - jiff::SignedDuration::from_hours(3);
    c.ingest(
        source,
        &IngestOptions {
            interval: Some(affluent_core::Interval::new(start, end).unwrap()),
            observer: None,
            recorder: None,
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn the_shipped_cassettes_replay_with_exact_record_counts() {
    let dir = culture(|t| t);
    // No key: Ticketmaster and football-data replay; the World Bank needs none, so it is live
    // unless offline.
    let keyless = load(dir.path(), &[]);
    assert_eq!(
        keyless.replaying.keys().collect::<Vec<_>>(),
        ["events", "matches"]
    );
    let project = load(dir.path(), &[("AFFLUENT_OFFLINE", "1")]);
    assert_eq!(
        project.replaying.keys().collect::<Vec<_>>(),
        ["economy", "events", "matches"]
    );
    let c = Connectors::new(project).unwrap();
    // Counts of the captures the cassettes were built from (cassettes/build.py): 20 + 1 + 1
    // events on two pages; 46 matches of two competitions; 99 World Bank records since 2000.
    let events = tick(&c, "events", "2026-12-04T12:00:00Z").await;
    assert!(events.errors.is_empty(), "{:?}", events.errors);
    assert_eq!((events.records, events.landed, events.requests), (22, 2, 2));
    let matches = tick(&c, "matches", "2026-12-04T12:00:00Z").await;
    assert!(matches.errors.is_empty(), "{:?}", matches.errors);
    assert_eq!(
        (matches.records, matches.landed, matches.requests),
        (46, 2, 2)
    );
    let economy = tick(&c, "economy", "2026-12-04T12:00:00Z").await;
    assert!(economy.errors.is_empty(), "{:?}", economy.errors);
    assert_eq!(
        (economy.records, economy.landed, economy.requests),
        (99, 2, 2)
    );
    // The same tick again: the same requests, the same answers, nothing landed twice.
    let again = tick(&c, "events", "2026-12-04T12:00:00Z").await;
    assert_eq!((again.landed, again.unchanged), (0, 2));
    // The next tick asks from another `startDateTime` (a request of its own, landed) and is
    // answered by the same recordings.
    let next = tick(&c, "events", "2026-12-04T15:00:00Z").await;
    assert!(next.errors.is_empty(), "{:?}", next.errors);
    assert_eq!((next.records, next.landed), (22, 2));
    let landed: usize = c
        .landing()
        .list("events")
        .unwrap()
        .iter()
        .map(|e| c.records_of(e).unwrap().0.len())
        .sum();
    assert_eq!(landed, 44);
}

/// Ticketmaster and football-data answers, each page announcing 30 pages.
async fn counting_server() -> (std::net::SocketAddr, Log) {
    serve(Arc::new(|hit: &Hit| {
        if hit.path.ends_with("/events.json") {
            let page: u64 = hit.query["page"].parse().unwrap();
            json(
                200,
                &json!({"_embedded": {"events": [{"name": format!("event {page}"), "dates": {"start": {"localDate": "2026-12-04"}}}]},
                    "page": {"size": 20, "totalElements": 600, "totalPages": 30, "number": page}}),
            )
        } else {
            json(200, &json!({"matches": [{"homeTeam": {"name": "A"}, "awayTeam": {"name": hit.path.clone()}, "utcDate": "2026-12-01T20:00:00Z"}]}))
        }
    }))
    .await
}

fn live_against(addr: std::net::SocketAddr, per_day: &str) -> impl Fn(String) -> String {
    let per_day = per_day.to_string();
    move |t: String| {
        t.replace(
            "https://app.ticketmaster.com/",
            &format!("http://127.0.0.1:{}/", addr.port()),
        )
        .replace(
            "https://api.football-data.org/",
            &format!("http://localhost:{}/", addr.port()),
        )
        .replace("[hosts.\"api.football-data.org\"]", "[hosts.\"localhost\"]")
        .replace("per_day = 5000", &format!("per_day = {per_day}"))
    }
}

#[tokio::test]
async fn ticketmaster_five_a_second_at_most_ten_pages_and_its_daily_quota() {
    let (addr, log) = counting_server().await;
    let dir = culture(live_against(addr, "5000"));
    let keys = [
        ("TICKETMASTER_API_KEY", "tm-key-123"),
        ("FOOTBALL_DATA_TOKEN", "fd-tok-123"),
    ];
    let project = load(dir.path(), &keys);
    assert!(project.replaying.is_empty(), "keys set: live");
    let c = Connectors::new(project).unwrap();
    let s = tick(&c, "events", "2026-12-04T12:00:00Z").await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    // 30 pages announced, `maximum_page = 9`: pages 0 to 9.
    assert_eq!(s.requests, 10);
    assert!(
        s.warnings.iter().any(|w| w.contains("maximum_page")),
        "{:?}",
        s.warnings
    );
    let hits: Vec<Hit> = log.hits();
    assert!(hits.iter().all(|h| h.query["apikey"] == "tm-key-123"));
    assert!(
        hits.iter()
            .all(|h| h.query["startDateTime"] == "2026-12-04T04:00:00Z")
    );
    // No window of one second holds a sixth request.
    for w in hits.windows(6) {
        let spread = w[5].at.duration_since(w[0].at);
        assert!(
            spread >= Duration::from_secs(1),
            "6 requests within {spread:?}"
        );
    }

    // The daily quota (7 here instead of 5,000) stops the run, and holds across a restart.
    let (addr, log) = counting_server().await;
    let dir = culture(live_against(addr, "7"));
    let c = Connectors::new(load(dir.path(), &keys)).unwrap();
    let s = tick(&c, "events", "2026-12-04T12:00:00Z").await;
    assert_eq!(log.hits().len(), 7);
    assert!(
        s.errors.iter().any(|e| e.contains("daily quota")),
        "{:?}",
        s.errors
    );
    let c = Connectors::new(load(dir.path(), &keys)).unwrap();
    let s = tick(&c, "events", "2026-12-04T15:00:00Z").await;
    assert_eq!(
        log.hits().len(),
        7,
        "no request past the quota after a restart"
    );
    assert_eq!(s.requests, 0);
}

#[tokio::test]
async fn football_data_ten_a_minute_across_ticks() {
    let (addr, log) = counting_server().await;
    let dir = culture(live_against(addr, "5000"));
    let c = Connectors::new(load(dir.path(), &[("FOOTBALL_DATA_TOKEN", "fd-tok-123")])).unwrap();
    for end in ["2026-12-04T12:00:00Z", "2026-12-04T15:00:00Z"] {
        let s = tick(&c, "matches", end).await;
        assert!(s.errors.is_empty(), "{:?}", s.errors);
    }
    let hits = log.hits();
    assert_eq!(hits.len(), 4);
    assert!(
        hits.iter()
            .all(|h| h.headers["x-auth-token"] == "fd-tok-123")
    );
    assert_eq!(hits[0].query["dateFrom"], "2026-11-04");
    assert_eq!(hits[0].query["dateTo"], "2026-12-04");
    // Spaced by at least 6 s: no minute holds an eleventh request.
    for w in hits.windows(2) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(gap >= Duration::from_secs(6), "two requests {gap:?} apart");
    }
}

#[tokio::test]
async fn public_apis_asks_football_data_for_a_forward_date_range() {
    let (addr, log) = counting_server().await;
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(example("public-apis").join("affluent.toml"))
        .unwrap()
        .replace(
            "https://api.football-data.org/",
            &format!("http://127.0.0.1:{}/", addr.port()),
        )
        .replace(
            "[hosts.\"api.football-data.org\"]",
            "[hosts.\"unused.invalid\"]",
        );
    std::fs::write(dir.path().join("affluent.toml"), text).unwrap();
    let c = Connectors::new(load(dir.path(), &[("FOOTBALL_DATA_TOKEN", "t")])).unwrap();
    // 3-hour intervals of a Paris day, the last one ending at midnight.
    for end in ["2026-12-04T11:00:00Z", "2026-12-04T23:00:00Z"] {
        let s = tick(&c, "matches", end).await;
        assert!(s.errors.is_empty(), "{:?}", s.errors);
    }
    let hits = log.hits();
    assert_eq!(hits.len(), 6, "3 competitions, 2 intervals");
    for h in &hits {
        assert!(
            h.query["dateFrom"] <= h.query["dateTo"],
            "dateFrom {} after dateTo {}",
            h.query["dateFrom"],
            h.query["dateTo"]
        );
    }
    assert_eq!(hits[0].query["dateFrom"], "2026-12-04");
    assert_eq!(hits[5].query["dateTo"], "2026-12-05");
}

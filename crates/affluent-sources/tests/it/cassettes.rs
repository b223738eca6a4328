//! Cassettes: a live run recorded against a local server serving the real captures, then
//! replayed by a fresh project with the server refusing everything: the same pages, the same
//! records, no request, no secret in the file.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use affluent_sources::rest::cassette::Recorder;
use affluent_sources::{Connectors, IngestOptions, RunSummary};
use serde_json::{Value, json};

use crate::captures;
use crate::support::*;

/// A server that answers with `handler` until `closed` is set, then with 500s.
async fn closable(handler: Handler) -> (std::net::SocketAddr, Log, Arc<AtomicBool>) {
    let closed = Arc::new(AtomicBool::new(false));
    let shut = closed.clone();
    let (addr, log) = serve(Arc::new(move |hit: &Hit| {
        if shut.load(Ordering::SeqCst) {
            return json(500, &json!({"error": "the test server is closed"}));
        }
        handler(hit)
    }))
    .await;
    (addr, log, closed)
}

const YEARS: (&str, &str) = ("2000-01-01T00:00:00Z", "2021-01-01T00:00:00Z");

async fn run(
    project: affluent_config::Project,
    source: &str,
    recorder: Option<Arc<Recorder>>,
    (from, to): (&str, &str),
) -> RunSummary {
    Connectors::new(project)
        .unwrap()
        .ingest(
            source,
            &IngestOptions {
                interval: Some(interval(from, to)),
                observer: None,
                recorder,
            },
        )
        .await
        .unwrap()
}

/// Records `source` of `toml` (with `{REPLAY}` where the replay mode goes) live, then replays
/// it in a fresh project over `replay_interval` with the server closed. Returns both summaries
/// and the cassette's text.
async fn record_then_replay(
    toml: &str,
    source: &str,
    env: &[(&str, &str)],
    closed: &AtomicBool,
    log: &Log,
    replay_interval: (&str, &str),
) -> (RunSummary, RunSummary, String) {
    let (live_dir, live) = project(&toml.replace("{REPLAY}", "never"), env);
    let recorder = Arc::new(Recorder::new());
    let recorded = run(live, source, Some(recorder.clone()), YEARS).await;
    assert!(recorded.errors.is_empty(), "{:?}", recorded.errors);
    assert_eq!(recorded.replayed_from, None);
    let path = live_dir
        .path()
        .join("cassettes")
        .join(format!("{source}.json"));
    let n = recorder.save(&path, source, false).unwrap();
    assert_eq!(n as u64, recorded.requests, "one interaction per request");
    let text = std::fs::read_to_string(&path).unwrap();

    closed.store(true, Ordering::SeqCst);
    let before = log.hits().len();
    let (replay_dir, replay) = project(&toml.replace("{REPLAY}", "always"), &[]);
    std::fs::create_dir_all(replay_dir.path().join("cassettes")).unwrap();
    std::fs::copy(
        &path,
        replay_dir
            .path()
            .join("cassettes")
            .join(format!("{source}.json")),
    )
    .unwrap();
    let replayed = run(replay, source, None, replay_interval).await;
    assert!(replayed.errors.is_empty(), "{:?}", replayed.errors);
    assert_eq!(log.hits().len(), before, "a replay sends no request");
    assert!(replayed.replayed_from.is_some());
    assert_eq!(
        (replayed.records, replayed.landed, replayed.requests),
        (recorded.records, recorded.landed, recorded.requests)
    );
    (recorded, replayed, text)
}

#[tokio::test]
async fn page_number_world_bank_replays_for_another_interval() {
    let (addr, log, closed) = closable(captures::world_bank_gdp()).await;
    let toml = format!(
        r#"
[sources.gdp]
type = "rest"
cassette = "cassettes/gdp.json"
replay = "{{REPLAY}}"
client.base_url = "http://{addr}/v2/"
endpoint.path = "country/{{country}}/indicator/NY.GDP.MKTP.CD"
endpoint.params = {{ format = "json", per_page = 20, date = "{{interval.start:%Y}}:{{interval.end - 1d:%Y}}" }}
endpoint.data_selector = "[1]"
endpoint.paginator = {{ type = "page_number", base_page = 1, total_path = "[0].pages" }}
fan_out.values = {{ country = ["bra", "chn"] }}
"#
    );
    // Replayed over another interval: `date` follows the interval, so it may differ.
    let (recorded, _, text) = record_then_replay(
        &toml,
        "gdp",
        &[],
        &closed,
        &log,
        ("2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!((recorded.records, recorded.landed), (65 + 61, 8));
    let file: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(file["source"], "gdp");
    assert_eq!(file["interactions"].as_array().unwrap().len(), 8);
    assert!(text.contains("date=2000%3A2020"), "recorded as requested");
}

#[tokio::test]
async fn page_number_ticketmaster_key_scrubbed_and_not_needed_to_replay() {
    let (addr, log, closed) = closable(captures::ticketmaster_events("tm-key-1234")).await;
    let toml = format!(
        r#"
[sources.events]
type = "rest"
cassette = "cassettes/events.json"
replay = "{{REPLAY}}"
client.base_url = "http://{addr}/discovery/v2/"
client.auth = {{ type = "api_key", name = "apikey", api_key = "${{TM_KEY:-}}", location = "query" }}
endpoint.path = "events.json"
endpoint.params = {{ countryCode = "US", size = 8, startDateTime = "{{interval.start:utc:%Y-%m-%dT%H:%M:%SZ}}" }}
endpoint.data_selector = "_embedded.events"
endpoint.paginator = {{ type = "page_number", total_path = "page.totalPages" }}
"#
    );
    let (recorded, _, text) = record_then_replay(
        &toml,
        "events",
        &[("TM_KEY", "tm-key-1234")],
        &closed,
        &log,
        ("2026-12-01T00:00:00Z", "2026-12-01T03:00:00Z"),
    )
    .await;
    assert_eq!((recorded.records, recorded.landed), (20, 3));
    assert!(
        !text.contains("tm-key-1234"),
        "the key echoed in bodies is scrubbed"
    );
}

#[tokio::test]
async fn offset_opendatasoft() {
    let (addr, log, closed) = closable(captures::velib_offset()).await;
    let toml = format!(
        r#"
[sources.velib]
type = "rest"
cassette = "cassettes/velib.json"
replay = "{{REPLAY}}"
client.base_url = "http://{addr}/api/explore/v2.1/catalog/datasets/velib-disponibilite-en-temps-reel/records"
endpoint.data_selector = "results"
endpoint.paginator = {{ type = "offset", limit = 500, total_path = "total_count" }}
"#
    );
    let (recorded, ..) = record_then_replay(&toml, "velib", &[], &closed, &log, YEARS).await;
    assert_eq!((recorded.records, recorded.landed), (1471, 3));
}

#[tokio::test]
async fn cursor_belib() {
    let (addr, log, closed) = closable(captures::belib_cursor()).await;
    let toml = format!(
        "[sources.belib]\ntype = \"rest\"\ncassette = \"cassettes/belib.json\"\nreplay = \"{{REPLAY}}\"\nclient.base_url = \"http://{addr}/belib\"\nendpoint.data_selector = \"results\"\nendpoint.paginator = {{ type = \"cursor\" }}\n"
    );
    let (recorded, ..) = record_then_replay(&toml, "belib", &[], &closed, &log, YEARS).await;
    assert_eq!((recorded.records, recorded.landed), (1937, 4));
}

#[tokio::test]
async fn json_link_football_data_with_a_header_token() {
    let (addr, log, closed) = closable(captures::football_matches(Some("fd-token-xyz"))).await;
    let toml = format!(
        r#"
[sources.matches]
type = "rest"
cassette = "cassettes/matches.json"
replay = "{{REPLAY}}"
client.base_url = "http://{addr}/v4/"
client.headers = {{ "X-Auth-Token" = "${{FD_TOKEN:-}}" }}
endpoint.path = "teams/65/matches"
endpoint.data_selector = "matches"
endpoint.paginator = {{ type = "json_link" }}
"#
    );
    let (recorded, _, text) = record_then_replay(
        &toml,
        "matches",
        &[("FD_TOKEN", "fd-token-xyz")],
        &closed,
        &log,
        YEARS,
    )
    .await;
    assert_eq!((recorded.records, recorded.landed), (46, 5));
    assert!(!text.contains("fd-token-xyz"));
}

#[tokio::test]
async fn header_link_gbfs() {
    let (addr, log, closed) = closable(captures::gbfs_information()).await;
    let toml = format!(
        "[sources.info]\ntype = \"rest\"\ncassette = \"cassettes/info.json\"\nreplay = \"{{REPLAY}}\"\nclient.base_url = \"http://{addr}/gbfs/station_information.json\"\nendpoint.data_selector = \"data.stations\"\nendpoint.paginator = {{ type = \"header_link\" }}\n"
    );
    let (recorded, ..) = record_then_replay(&toml, "info", &[], &closed, &log, YEARS).await;
    assert_eq!((recorded.records, recorded.landed), (1495, 4));
}

#[tokio::test]
async fn single_page_post_with_a_json_body() {
    let (addr, log, closed) = closable(Arc::new(move |hit: &Hit| {
        let body: Value = serde_json::from_str(&hit.body).unwrap();
        json(200, &json!({"items": [{"q": body["q"]}, {"q": body["q"]}]}))
    }))
    .await;
    let toml = format!(
        r#"
[sources.search]
type = "rest"
cassette = "cassettes/search.json"
replay = "{{REPLAY}}"
client.base_url = "http://{addr}/search"
endpoint.method = "POST"
endpoint.json = {{ q = "{{kind}}" }}
endpoint.data_selector = "items"
fan_out.values = {{ kind = ["a", "b", "c"] }}
"#
    );
    let (recorded, ..) = record_then_replay(&toml, "search", &[], &closed, &log, YEARS).await;
    assert_eq!((recorded.records, recorded.landed), (6, 3));
}

#[tokio::test]
async fn auto_replays_without_its_key_and_a_missing_recording_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cassette = json!({
        "affluent_cassette": 1, "source": "api", "recorded_at": "2026-12-01T00:00:00Z",
        "interactions": [{"method": "GET", "url": "http://127.0.0.1:9/items?kind=a&apikey=***",
            "status": 200, "headers": {"content-type": "application/json"},
            "body": {"items": [1, 2, 3]}}]
    });
    std::fs::create_dir_all(dir.path().join("rec")).unwrap();
    std::fs::write(dir.path().join("rec/api.json"), cassette.to_string()).unwrap();
    let toml = |kinds: &str| {
        format!(
            r#"
[sources.api]
type = "rest"
cassette = "rec/api.json"
client.base_url = "http://127.0.0.1:9/items"
endpoint.params = {{ apikey = "${{API_KEY:-}}", kind = "{{kind}}" }}
endpoint.data_selector = "items"
fan_out.values = {{ kind = [{kinds}] }}
"#
        )
    };
    let load = |text: &str, env: &[(&str, &str)]| {
        std::fs::write(dir.path().join("affluent.toml"), text).unwrap();
        let env = affluent_config::Environment::from_map(
            env.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        affluent_config::load_with_env(dir.path(), &env).unwrap()
    };
    // With the key set, the source is live (and port 9 refuses).
    let live = load(&toml("\"a\""), &[("API_KEY", "k-123456")]);
    assert!(live.replaying.is_empty());
    // Offline, or without the key, it replays.
    let offline = load(
        &toml("\"a\""),
        &[("API_KEY", "k-123456"), ("AFFLUENT_OFFLINE", "1")],
    );
    assert!(offline.replaying.contains_key("api"));
    let keyless = load(&toml("\"a\""), &[]);
    assert!(keyless.replaying.contains_key("api"));
    let s = run(keyless, "api", None, YEARS).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.records, s.landed), (3, 1));
    // A request the cassette lacks fails that chain with what to do; the others land.
    let more = load(&toml("\"a\", \"b\""), &[]);
    let s = run(
        more,
        "api",
        None,
        ("2001-01-01T00:00:00Z", "2002-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(s.records, 0, "a: unchanged since the previous replay");
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert!(
        s.errors[0].contains("has no recording of GET http://127.0.0.1:9/items?")
            && s.errors[0].contains("kind=b")
            && s.errors[0].contains("affluent record"),
        "{}",
        s.errors[0]
    );
}

#[test]
fn replay_without_a_cassette_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        "[sources.api]\ntype = \"rest\"\nreplay = \"always\"\nclient.base_url = \"http://127.0.0.1:9/\"\n",
    )
    .unwrap();
    let err = affluent_config::load_with_env(dir.path(), &affluent_config::Environment::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("`replay` needs a `cassette`"), "{err}");
    assert!(err.contains("affluent.toml:3:"), "{err}");
}

fn load_in(
    dir: &std::path::Path,
    toml: &str,
    env: &[(&str, &str)],
) -> Result<affluent_config::Project, String> {
    std::fs::write(dir.join("affluent.toml"), toml).unwrap();
    let env = affluent_config::Environment::from_map(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    affluent_config::load_with_env(dir, &env).map_err(|e| e.to_string())
}

#[test]
fn which_sources_replay_and_which_problems_still_count() {
    let dir = tempfile::tempdir().unwrap();
    let source = |auth: &str, extra: &str| {
        format!(
            "[sources.api]\ntype = \"rest\"\ncassette = \"rec/api.json\"\nclient.base_url = \"${{API_URL:-http://127.0.0.1:9}}/\"\n{auth}{extra}"
        )
    };
    let key = "client.auth = { type = \"bearer\", token = \"${API_TOKEN}\" }\n";
    // An unset variable without a default: the source replays (every variable required, as
    // `affluent run` and `validate` load), and needs none of its variables.
    let p = load_in(dir.path(), &source(key, ""), &[]).unwrap();
    assert!(p.replaying.contains_key("api") && p.unavailable.is_empty());
    assert_eq!(
        p.missing_vars["api"].iter().collect::<Vec<_>>(),
        ["API_TOKEN"]
    );
    // A default that gives a value is no missing variable: live.
    let p = load_in(dir.path(), &source(key, ""), &[("API_TOKEN", "t-123456")]).unwrap();
    assert!(p.replaying.is_empty(), "API_URL's default is a value");
    // Replaying does not hide the source's other problems.
    let err = load_in(
        dir.path(),
        &source(key, "endpoint.data_selectr = \"x\"\n"),
        &[],
    )
    .unwrap_err();
    assert!(err.contains("data_selectr"), "{err}");
    // `replay = "never"`: the unset variable is the error it always was.
    let err = load_in(dir.path(), &source(key, "replay = \"never\"\n"), &[]).unwrap_err();
    assert!(
        err.contains("environment variable `API_TOKEN` is not set"),
        "{err}"
    );
}

#[tokio::test]
async fn a_cassette_is_checked_when_read_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rec")).unwrap();
    let toml = "[sources.api]\ntype = \"rest\"\ncassette = \"rec/api.json\"\nreplay = \"always\"\nclient.base_url = \"http://127.0.0.1:9/items\"\n";
    let write = |doc: serde_json::Value| {
        std::fs::write(dir.path().join("rec/api.json"), doc.to_string()).unwrap()
    };
    let one = |status: u16, source: &str| {
        json!({"affluent_cassette": 1, "source": source, "recorded_at": "2026-12-01T00:00:00Z",
            "interactions": [{"method": "GET", "url": "http://x/items", "status": status, "body": [1]}]})
    };
    let error = |expected: &str| {
        let project = load_in(dir.path(), toml, &[]).unwrap();
        let expected = expected.to_string();
        async move {
            let err = Connectors::new(project)
                .unwrap()
                .ingest(
                    "api",
                    &IngestOptions {
                        interval: Some(interval(YEARS.0, YEARS.1)),
                        observer: None,
                        recorder: None,
                    },
                )
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(&expected), "{expected:?} not in {err}");
        }
    };
    write(one(500, "api"));
    error("status 500: a cassette holds answers (2xx)").await;
    write(one(200, "other"));
    error("holds the answers of source `other`, not `api`").await;
    write(json!({"affluent_cassette": 2, "source": "api", "new_field": true}));
    error("cassette format 2, this affluent reads format 1").await;
    std::fs::write(
        dir.path().join("rec/api.json"),
        "{\"affluent_cassette\": 1,",
    )
    .unwrap();
    error("not a cassette").await;
    std::fs::remove_file(dir.path().join("rec/api.json")).unwrap();
    error("does not exist: record it with `affluent record api`").await;
}

#[tokio::test]
async fn answers_of_other_intervals_are_replayed_with_a_warning_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("rec")).unwrap();
    let answer = |from: &str, items: serde_json::Value| json!({"method": "GET", "url": format!("http://x/items?from={from}"), "status": 200, "body": items});
    std::fs::write(
        dir.path().join("rec/api.json"),
        json!({"affluent_cassette": 1, "source": "api", "recorded_at": "2026-12-01T00:00:00Z",
            "interactions": [answer("2001-01-01", json!([1])), answer("2002-01-01", json!([1, 2]))]})
        .to_string(),
    )
    .unwrap();
    let toml = "[sources.api]\ntype = \"rest\"\ncassette = \"rec/api.json\"\nreplay = \"always\"\nclient.base_url = \"http://127.0.0.1:9/items\"\nendpoint.params = { from = \"{interval.start:date}\" }\n";
    let project = load_in(dir.path(), toml, &[]).unwrap();
    let c = Connectors::new(project).unwrap();
    let at = |from: &str, to: &str| IngestOptions {
        interval: Some(interval(from, to)),
        observer: None,
        recorder: None,
    };
    // Its own interval: its own answer, no warning.
    let s = c
        .ingest("api", &at("2001-01-01T00:00:00Z", "2001-01-02T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!((s.records, s.warnings.len()), (1, 0), "{:?}", s.warnings);
    // Another: the newest recording, and the run says so.
    let s = c
        .ingest("api", &at("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(s.records, 2);
    assert!(
        s.warnings
            .iter()
            .any(|w| w
                .contains("1 answer(s) replayed from recordings made for other values of from")),
        "{:?}",
        s.warnings
    );
}

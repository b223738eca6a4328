//! Faults: 429 with Retry-After, 500, connection resets, timeouts, error bodies, malformed
//! JSON, rate limits, daily quotas across restarts, and a canary secret that must appear nowhere.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use affluent_sources::{Connectors, IngestOptions, SourceError};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

fn opts() -> IngestOptions {
    day_options()
}

/// A raw HTTP server whose n-th connection gets the n-th scripted answer (`None`: reset).
/// Returns its address and the arrival time of each request.
async fn scripted(script: Vec<Option<String>>) -> (std::net::SocketAddr, Arc<Mutex<Vec<Instant>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let log = arrivals.clone();
    tokio::spawn(async move {
        let mut i = 0;
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let _ = sock.read(&mut buf).await;
            log.lock().unwrap().push(Instant::now());
            let answer = script
                .get(i)
                .cloned()
                .unwrap_or_else(|| script.last().cloned().flatten());
            i += 1;
            match answer {
                Some(text) => {
                    let _ = sock.write_all(text.as_bytes()).await;
                    let _ = sock.shutdown().await;
                }
                None => {
                    // Reset: close with unread data and SO_LINGER 0.
                    #[allow(deprecated)] // blocking on drop is what a reset needs here
                    let _ = sock.set_linger(Some(Duration::ZERO));
                    drop(sock);
                }
            }
        }
    });
    (addr, arrivals)
}

fn http(status: &str, headers: &str, body: &str) -> Option<String> {
    Some(format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
        body.len()
    ))
}

fn source(addr: impl std::fmt::Display, extra: &str) -> String {
    format!(
        "[sources.api]\ntype = \"rest\"\nclient.base_url = \"http://{addr}/data\"\nretry = {{ max_attempts = 5, initial_backoff_ms = 20, max_backoff_secs = 1 }}\n{extra}\n"
    )
}

#[tokio::test]
async fn retries_429_500_and_reset_never_before_retry_after() {
    let (addr, arrivals) = scripted(vec![
        http(
            "429 Too Many Requests",
            "retry-after: 1\r\n",
            r#"{"message":"slow down"}"#,
        ),
        http("500 Internal Server Error", "", "oops"),
        None,
        http("503 Service Unavailable", "retry-after: 1\r\n", ""),
        http("200 OK", "", r#"[{"id":1},{"id":2}]"#),
    ])
    .await;
    let (_dir, project) = project(&source(addr, ""), &[]);
    let c = Connectors::new(project).unwrap();
    let s = c.ingest("api", &opts()).await.unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.records, s.requests, s.retries), (2, 5, 4));
    let t = arrivals.lock().unwrap().clone();
    assert_eq!(t.len(), 5);
    // Requests after a Retry-After of 1 s came at least 1 s after the answer was sent.
    assert!(t[1] - t[0] >= Duration::from_secs(1), "{:?}", t[1] - t[0]);
    assert!(t[4] - t[3] >= Duration::from_secs(1), "{:?}", t[4] - t[3]);
    assert_eq!(
        c.landing().list("api").unwrap().len(),
        1,
        "only the good answer is landed"
    );
}

#[tokio::test]
async fn retry_after_as_http_date_is_honoured() {
    let when = std::time::SystemTime::now() + Duration::from_secs(2);
    let date = httpdate::fmt_http_date(when);
    let (addr, arrivals) = scripted(vec![
        http(
            "429 Too Many Requests",
            &format!("retry-after: {date}\r\n"),
            "",
        ),
        http("200 OK", "", "[]"),
    ])
    .await;
    let (_dir, project) = project(&source(addr, ""), &[]);
    let c = Connectors::new(project).unwrap();
    let s = c.ingest("api", &opts()).await.unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let t = arrivals.lock().unwrap().clone();
    // HTTP dates have one-second resolution: the retry waits for that second to begin.
    let deadline = httpdate::parse_http_date(&date).unwrap();
    assert!(std::time::SystemTime::now() >= deadline);
    assert!(
        t[1] - t[0] >= Duration::from_millis(900),
        "{:?}",
        t[1] - t[0]
    );
}

#[tokio::test]
async fn football_data_error_body_fails_the_request_and_is_not_stored() {
    let body = r#"{"message":"Date argument not in expected format: yyyy-MM-dd","errorCode":400}"#;
    let (addr, arrivals) = scripted(vec![http("400 Bad Request", "", body)]).await;
    let (_dir, project) = project(
        &source(
            addr,
            "endpoint.params = { dateFrom = \"{interval.start}\" }",
        ),
        &[],
    );
    let c = Connectors::new(project).unwrap();
    let s = c.ingest("api", &opts()).await.unwrap();
    assert_eq!(s.errors.len(), 1);
    assert!(
        s.errors[0].contains("HTTP 400")
            && s.errors[0].contains("Date argument not in expected format: yyyy-MM-dd"),
        "{}",
        s.errors[0]
    );
    assert_eq!(arrivals.lock().unwrap().len(), 1, "a 400 is not retried");
    assert!(c.landing().list("api").unwrap().is_empty());
}

#[tokio::test]
async fn error_payload_with_200_and_malformed_json_are_kept_but_rejected() {
    let wb_error = r#"[{"message":[{"id":"120","key":"Invalid value","value":"The provided parameter value is not valid"}]}]"#;
    let (addr, _) = scripted(vec![
        http("200 OK", "", wb_error),
        http("200 OK", "", r#"{"results": [1, 2"#),
    ])
    .await;
    let (_dir, project) = project(
        &source(
            addr,
            "endpoint.data_selector = \"[1]\"\nfan_out.values = { n = [\"a\", \"b\"] }\nconcurrency = 1",
        ),
        &[],
    );
    let c = Connectors::new(project).unwrap();
    let s = c.ingest("api", &opts()).await.unwrap();
    assert_eq!(s.errors.len(), 2, "{:?}", s.errors);
    let all = s.errors.join("\n");
    assert!(
        all.contains("error payload: Invalid value: The provided parameter value is not valid"),
        "{all}"
    );
    assert!(all.contains("malformed JSON"), "{all}");
    let entries = c.landing().list("api").unwrap();
    assert_eq!(entries.len(), 2, "landed before parsing");
    assert!(entries.iter().all(|e| e.rejected.is_some()));
    assert_eq!(s.records, 0);
}

#[tokio::test]
async fn slow_responses_time_out_and_are_retried() {
    let (addr, log) = serve(Arc::new(|_hit: &Hit| {
        std::thread::sleep(Duration::from_millis(1500));
        json(200, &json!([]))
    }))
    .await;
    let (_dir, project) = project(
        &format!(
            "[sources.api]\ntype = \"rest\"\nclient.base_url = \"http://{addr}/slow\"\nclient.timeout_secs = 1\nretry = {{ max_attempts = 2, initial_backoff_ms = 10 }}\n"
        ),
        &[],
    );
    let c = Connectors::new(project).unwrap();
    let s = c.ingest("api", &opts()).await.unwrap();
    assert_eq!(s.errors.len(), 1);
    assert!(
        s.errors[0].contains("network error") && s.errors[0].contains("timed out"),
        "{}",
        s.errors[0]
    );
    assert_eq!(log.count("/slow"), 2);
}

#[tokio::test]
async fn per_second_limit_holds_in_every_window() {
    let (addr, log) = serve(Arc::new(|_hit: &Hit| json(200, &json!([{"x": 1}])))).await;
    let values: Vec<String> = (0..16).map(|i| format!("\"v{i}\"")).collect();
    let (_dir, project) = project(
        &format!(
            "[sources.api]\ntype = \"rest\"\nconcurrency = 8\nclient.base_url = \"http://{addr}/x\"\nendpoint.params = {{ v = \"{{v}}\" }}\nfan_out.values = {{ v = [{}] }}\nrate_limit = {{ per_second = 5 }}\n",
            values.join(", ")
        ),
        &[],
    );
    let c = Connectors::new(project).unwrap();
    let s = c.ingest("api", &opts()).await.unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    let times: Vec<Instant> = log.hits().iter().map(|h| h.at).collect();
    assert_eq!(times.len(), 16);
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .filter(|u| **u - *t < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 5,
            "{in_window} requests within 1 s of request {i}"
        );
    }
}

#[tokio::test]
async fn daily_quota_survives_a_restart() {
    let (addr, log) = serve(Arc::new(|_hit: &Hit| json(200, &json!([{"x": 1}])))).await;
    let toml = format!(
        "[sources.api]\ntype = \"rest\"\nconcurrency = 1\nclient.base_url = \"http://{addr}/q\"\nendpoint.params = {{ v = \"{{v}}\" }}\nfan_out.values = {{ v = [\"a\", \"b\"] }}\nrate_limit = {{ per_day = 3 }}\n"
    );
    let (dir, project) = project(&toml, &[]);
    let s = ingest_api(project).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    // A new process: the count of today is read back.
    let s = Connectors::new(reload(&dir, &[]))
        .unwrap()
        .ingest("api", &opts())
        .await
        .unwrap();
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert!(
        s.errors[0].contains("daily quota of 3 requests for source api is used up"),
        "{}",
        s.errors[0]
    );
    assert_eq!(log.count("/q"), 3);
}

#[tokio::test]
async fn repeated_page_and_max_pages_stop_with_a_warning() {
    let (addr, _log) = serve(Arc::new(|hit: &Hit| {
        if hit.path == "/same" {
            json(200, &json!({"items": [{"a": 1}]}))
        } else {
            let page: u32 = hit.query["page"].parse().unwrap();
            json(200, &json!({"items": [{"page": page}]}))
        }
    }))
    .await;
    let toml = format!(
        r#"
[sources.same]
type = "rest"
client.base_url = "http://{addr}/same"
endpoint.data_selector = "items"
endpoint.paginator = {{ type = "page_number" }}

[sources.endless]
type = "rest"
max_pages = 7
client.base_url = "http://{addr}/endless"
endpoint.data_selector = "items"
endpoint.paginator = {{ type = "page_number" }}
"#
    );
    let (_dir, project) = project(&toml, &[]);
    let c = Connectors::new(project).unwrap();
    let s = c.ingest("same", &opts()).await.unwrap();
    assert_eq!((s.landed, s.requests), (1, 2));
    assert!(
        s.warnings
            .iter()
            .any(|w| w.contains("repeats the previous page")),
        "{:?}",
        s.warnings
    );
    let s = c.ingest("endless", &opts()).await.unwrap();
    assert_eq!(s.landed, 7);
    assert!(
        s.warnings.iter().any(|w| w.contains("max_pages = 7")),
        "{:?}",
        s.warnings
    );
}

/// Sources `ok` (at `ok_path`, its key in the query and in `X-Api-Key`) and `denied` (its key
/// in the query, with `denied_extra` keys) on a server that echoes keys back.
fn echo_sources(addr: std::net::SocketAddr, ok_path: &str, denied_extra: &str) -> String {
    let auth = r#"client.auth = { type = "api_key", name = "key", api_key = "${API_KEY}", location = "query" }"#;
    format!(
        "[sources.ok]\ntype = \"rest\"\nclient.base_url = \"http://{addr}{ok_path}\"\n{auth}\nclient.headers = {{ \"X-Api-Key\" = \"${{API_KEY}}\" }}\nendpoint.data_selector = \"data\"\n\n[sources.denied]\ntype = \"rest\"\nclient.base_url = \"http://{addr}/denied\"\n{auth}\n{denied_extra}"
    )
}

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Every log line of this thread, at every level, while the guard lives.
    fn install() -> (Self, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }
}

/// The text of every file under `dir` (landing bodies decompressed), but the project file.
fn written_texts(dir: &std::path::Path) -> Vec<String> {
    walk(dir)
        .into_iter()
        .map(|file| {
            let bytes = std::fs::read(&file).unwrap();
            let bytes = if file.to_string_lossy().ends_with(".zst") {
                zstd::decode_all(bytes.as_slice()).unwrap()
            } else {
                bytes
            };
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .collect()
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn canary_secret_appears_nowhere() {
    const CANARY: &str = "CANARY-7f3a9c-SECRET";
    let (addr, _log) = serve(Arc::new(|hit: &Hit| {
        // A careless API that echoes the key back, in data and in errors.
        let key = hit.query.get("key").cloned().unwrap_or_default();
        match hit.path.as_str() {
            "/ok" => json(200, &json!({"request": {"url": format!("/ok?{}", hit.raw_query), "key": key}, "data": [{"a": 1}]})),
            _ => json(403, &json!({"message": format!("key {key} has no access to {}", hit.raw_query)})),
        }
    }))
    .await;
    let toml = echo_sources(addr, "/ok", "");
    let env = [("API_KEY", CANARY)];
    let (dir, project) = project(&toml, &env);
    let (captured, _guard) = Captured::install();

    let c = Connectors::new(project).unwrap();
    let ok = c.ingest("ok", &opts()).await.unwrap();
    assert_eq!(ok.records, 1, "{:?}", ok.errors);
    let denied = c.ingest("denied", &opts()).await.unwrap();
    assert_eq!(denied.errors.len(), 1);
    assert!(
        denied.errors[0].contains("has no access"),
        "{}",
        denied.errors[0]
    );
    let unknown = c.ingest("nope", &opts()).await.err().unwrap();
    assert!(matches!(unknown, SourceError::UnknownSource { .. }));

    let mut texts = vec![
        format!("{ok:?}"),
        format!("{denied:?}"),
        String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned(),
    ];
    texts.extend(written_texts(dir.path()));
    assert!(texts.len() > 4);
    for t in &texts {
        assert!(
            !t.contains(CANARY),
            "canary leaked in: {}",
            &t[..t.len().min(500)]
        );
    }
    assert_eq!(c.landing().list("ok").unwrap().len(), 1);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else if !p.ends_with("affluent.toml") {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn per_host_limit_is_shared_by_sources_running_together() {
    let (addr, log) = serve(Arc::new(|_hit: &Hit| json(200, &json!([{"x": 1}])))).await;
    let source = |name: &str| {
        format!(
            "[sources.{name}]\ntype = \"rest\"\nconcurrency = 4\nclient.base_url = \"http://{addr}/{name}\"\nendpoint.params = {{ v = \"{{v}}\" }}\nfan_out.values = {{ v = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\"] }}\n"
        )
    };
    let toml = format!(
        "[hosts.\"127.0.0.1\"]\nper_second = 4\n\n{}\n{}",
        source("one"),
        source("two")
    );
    let (_dir, project) = project(&toml, &[]);
    let c = Connectors::new(project).unwrap();
    let o = opts();
    let (a, b) = tokio::join!(c.ingest("one", &o), c.ingest("two", &o));
    assert!(a.unwrap().errors.is_empty() && b.unwrap().errors.is_empty());
    let times: Vec<Instant> = log.hits().iter().map(|h| h.at).collect();
    assert_eq!(times.len(), 12);
    assert_eq!(log.count("/one"), 6);
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .filter(|u| **u - *t < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 4,
            "{in_window} requests within 1 s of request {i}"
        );
    }
}

#[tokio::test]
async fn a_run_reports_each_request_chain_to_its_observer() {
    // Four chains: three answer, one fails for good (404 is not retried).
    let (addr, _log) = serve(Arc::new(|hit: &Hit| {
        if hit.query.get("v").is_some_and(|v| v == "c") {
            json(404, &json!({"message": "no such thing"}))
        } else {
            json(200, &json!([{"x": 1}, {"x": 2}]))
        }
    }))
    .await;
    let toml = format!(
        "[sources.api]\ntype = \"rest\"\nconcurrency = 1\nclient.base_url = \"http://{addr}/q\"\nendpoint.params = {{ v = \"{{v}}\" }}\nfan_out.values = {{ v = [\"a\", \"b\", \"c\", \"d\"] }}\n"
    );
    let (_dir, project) = project(&toml, &[]);
    let recorder = Arc::new(affluent_core::progress::Recorder::default());
    let s = Connectors::new(project)
        .unwrap()
        .ingest(
            "api",
            &IngestOptions {
                observer: Some(recorder.clone()),
                ..opts()
            },
        )
        .await
        .unwrap();
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    let events: Vec<_> = recorder
        .events()
        .into_iter()
        .map(|e| match e {
            affluent_core::Progress::Requests(p) => p,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(
        events.iter().map(|p| (p.done, p.total)).collect::<Vec<_>>(),
        vec![(1, 4), (2, 4), (3, 4), (4, 4)]
    );
    let last = events.last().unwrap();
    assert_eq!((last.failed, last.landed, last.records), (1, 3, 6));
    assert!(events.iter().all(|p| p.source == "api"));
}

#[tokio::test]
async fn retry_after_pauses_every_request_to_the_host() {
    // The first request is told to wait a second; the others of the run (four in flight at a
    // time) must not arrive during that second, whichever request they are.
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (addr, log) = serve(Arc::new(move |_hit: &Hit| {
        if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
            raw(429, &[("retry-after", "1")], r#"{"message":"slow down"}"#)
        } else {
            json(200, &json!([{"x": 1}]))
        }
    }))
    .await;
    let toml = format!(
        "[sources.api]\ntype = \"rest\"\nconcurrency = 4\nclient.base_url = \"http://{addr}/q\"\nendpoint.params = {{ v = \"{{v}}\" }}\nfan_out.values = {{ v = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\"] }}\nretry = {{ max_attempts = 3, initial_backoff_ms = 10, max_backoff_secs = 1 }}\n"
    );
    let (_dir, project) = project(&toml, &[]);
    let s = ingest_api(project).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.records, 8);
    let hits = log.hits();
    assert_eq!(hits.len(), 9, "eight requests and one retry");
    let t0 = hits[0].at;
    // The three requests already on the wire beside the first may arrive at once; no other
    // request arrives until the second is over.
    let inside: Vec<_> = hits[1..]
        .iter()
        .map(|h| h.at.duration_since(t0))
        .filter(|d| *d < Duration::from_millis(950))
        .collect();
    assert!(
        inside.len() <= 3,
        "{} requests inside the announced window: {inside:?}",
        inside.len()
    );
}

/// The forms a secret takes on the wire and in a careless server's answers.
fn wire_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap();
    let json = json[1..json.len() - 1].to_string();
    vec![
        secret.to_string(),
        form,
        utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
        json.replace('/', "\\/"),
        base64::engine::general_purpose::STANDARD.encode(secret),
    ]
}

#[tokio::test]
async fn random_secrets_appear_nowhere_in_any_encoding() {
    use rand::{Rng, SeedableRng};
    const ALPHABET: &[char] = &[
        'a', 'b', 'Z', '7', '-', '_', '.', '~', '/', '+', '=', '&', '%', '?', '#', ' ', '"', '\\',
        'é', '€',
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    for round in 0..4 {
        let mut secret = || -> String {
            (0..rng.random_range(16..24))
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                .collect()
        };
        let key = secret();
        // A path segment as written in base_url: characters that end a path (`?`, `#`) or
        // split it (`/`, `%`, `\`) are not part of one.
        let path_token: String = secret()
            .chars()
            .filter(|c| !"?#/%\\".contains(*c))
            .collect();
        let (addr, log) = serve(Arc::new(|hit: &Hit| {
            // A careless API: it echoes the key in every encoding, in data and in errors.
            let key = hit.query.get("key").cloned().unwrap_or_default();
            // In a JSON value: the key as JSON escapes it, and its URL and base64 forms.
            let forms = wire_forms(&key);
            let plain = [&forms[1], &forms[2], &forms[4]].map(|f| f.as_str()).join(" | ");
            let path = hit.path.clone();
            if hit.path.starts_with("/ok") {
                json(
                    200,
                    &json!({"request": {"path": path, "echo": key, "forms": plain}, "data": [{"a": 1, "seen": key, "forms": plain}]}),
                )
            } else {
                raw(
                    403,
                    &[("content-type", "application/json")],
                    format!(r#"{{"message": "key {} refused at {path}"}}"#, wire_forms(&key)[3]),
                )
            }
        }))
        .await;
        let encoded_token: String =
            url::form_urlencoded::byte_serialize(path_token.as_bytes()).collect();
        let toml = echo_sources(addr, "/ok/${PATH_TOKEN}", "retry = { max_attempts = 1 }\n");
        let env = [
            ("API_KEY", key.as_str()),
            ("PATH_TOKEN", path_token.as_str()),
        ];
        let (dir, project) = project(&toml, &env);
        let (captured, _guard) = Captured::install();
        let c = Connectors::new(project).unwrap();
        let ok = c.ingest("ok", &opts()).await.unwrap();
        let denied = c.ingest("denied", &opts()).await.unwrap();
        assert_eq!(denied.errors.len(), 1, "round {round}");
        // The server did get the real values (the test is not vacuous).
        let hits = log.hits();
        assert!(
            hits.iter().any(|h| h.query.get("key") == Some(&key)),
            "round {round}: {:?} {:?}",
            ok.errors,
            hits.iter().map(|h| &h.query).collect::<Vec<_>>()
        );
        assert!(
            hits.iter()
                .any(|h| percent_encoding::percent_decode_str(&h.path)
                    .decode_utf8_lossy()
                    .contains(&path_token)),
            "round {round}: {:?}",
            hits.iter().map(|h| &h.path).collect::<Vec<_>>()
        );
        let mut texts = vec![
            format!("{ok:?}"),
            format!("{denied:?}"),
            String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned(),
        ];
        texts.extend(written_texts(dir.path()));
        for text in &texts {
            for form in wire_forms(&key)
                .into_iter()
                .chain(wire_forms(&path_token))
                .chain([encoded_token.clone()])
            {
                assert!(
                    !text.contains(&form),
                    "round {round}: {form:?} leaked in: {}",
                    &text[..text.len().min(800)]
                );
            }
        }
    }
}

/// `concurrency` bounds a source's requests in flight over all its runs, not each run's: four
/// intervals ingested at once with `concurrency = 2` never have more than two requests out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_bounds_the_source_s_requests_across_its_runs() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let now = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let app = axum::Router::new().fallback({
        let (now, most) = (now.clone(), most.clone());
        move || async move {
            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(40)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            axum::Json(json!([{"x": 1}]))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let toml = format!(
        "[sources.api]\ntype = \"rest\"\nconcurrency = 2\nclient.base_url = \"http://{addr}/\"\nendpoint.params = {{ v = \"{{v}}\", day = \"{{interval.start:%Y-%m-%d}}\" }}\nfan_out.values = {{ v = [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\"] }}\n"
    );
    let (_dir, project) = project(&toml, &[]);
    let c = Connectors::new(project).unwrap();
    let day = |d: u32| IngestOptions {
        interval: Some(interval(
            &format!("2024-01-{d:02}T00:00:00Z"),
            &format!("2024-01-{:02}T00:00:00Z", d + 1),
        )),
        observer: None,
        recorder: None,
    };
    let (o1, o2, o3, o4) = (day(1), day(2), day(3), day(4));
    let runs = tokio::join!(
        c.ingest("api", &o1),
        c.ingest("api", &o2),
        c.ingest("api", &o3),
        c.ingest("api", &o4)
    );
    for r in [runs.0, runs.1, runs.2, runs.3] {
        let r = r.unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.landed, 6);
    }
    assert_eq!(
        most.load(Ordering::SeqCst),
        2,
        "requests in flight at most, over four runs"
    );
}

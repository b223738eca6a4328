//! The pipeline's page: tasks, coverage, runs, and backfills an admin starts, against a real
//! REST source served on 127.0.0.1 (down, then up).

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;

const SECRET: &str = "tok-5ecret-9f3b";

/// A REST API on 127.0.0.1: `GET /items` answers 500 (echoing the request's query, secret
/// included, as careless servers do) while `down`, else one record.
struct Api {
    url: String,
    down: Arc<AtomicBool>,
}

impl Api {
    async fn start() -> Self {
        let down = Arc::new(AtomicBool::new(true));
        let flag = down.clone();
        let app = axum::Router::new().route(
            "/items",
            axum::routing::get(move |uri: axum::http::Uri| {
                let flag = flag.clone();
                async move {
                    if flag.load(Ordering::SeqCst) {
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("upstream broke while serving {uri}"),
                        )
                    } else {
                        (StatusCode::OK, r#"[{"id": 1, "value": 2.5}]"#.to_string())
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, down }
    }
}

fn project(api: &Api) -> String {
    PROJECT.to_string()
        + &format!(
            r#"
[sources.items]
type = "rest"
every = "1h"
start_date = "-6h"
client.base_url = "{}"
client.headers = {{ Authorization = "Bearer ${{API_TOKEN}}" }}
endpoint.path = "items"
endpoint.params = {{ key = "${{API_TOKEN}}", hour = "{{interval.start:utc:%Y-%m-%dT%H:%M:%SZ}}" }}
retry = {{ max_attempts = 1 }}
rate_limit = {{ per_second = 50, per_day = 100 }}

[hosts."127.0.0.1"]
per_minute = 6000

[tables.items]
source = "items"
"#,
            api.url
        )
}

/// Waits until no backfill started here is running; returns the list.
async fn settled(client: &mut Client, app: &Router) -> Value {
    for _ in 0..600 {
        let r = client
            .send(app, "GET", "/api/pipeline/backfills", None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let list = r.json();
        if list
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["status"] != "running")
        {
            return list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the backfill did not end within 60 s");
}

async fn coverage(client: &mut Client, app: &Router) -> Value {
    let r = client
        .send(app, "GET", "/api/pipeline/coverage?task=items", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let all = r.json();
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    all[0].clone()
}

#[tokio::test]
async fn coverage_shows_holes_and_an_admins_backfill_fills_them() {
    let api = Api::start().await;
    let f = fixture_env(&project(&api), &[("API_TOKEN", SECRET)]).await;
    let mut vic = Client::default();
    vic.login(&f.app, "vic", "viewer pass").await;
    let mut ada = Client::default();
    ada.login(&f.app, "ada", "correct horse").await;

    // Never run since its start date: every interval is missing, one segment of them.
    let c = coverage(&mut vic, &f.app).await;
    assert_eq!(c["task"], "source:items");
    assert_eq!(c["schedule"], "every 1h");
    let missing = c["counts"]["missing"].as_u64().unwrap();
    assert!((5..=6).contains(&missing), "{c}");
    assert_eq!(c["holes"], missing);
    let segments = c["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 1, "{c}");
    assert_eq!(
        (
            &segments[0]["state"],
            &segments[0]["hole"],
            segments[0]["intervals"].as_u64()
        ),
        (&json!("missing"), &json!(true), Some(missing))
    );
    let (from, to) = (
        segments[0]["start"].as_str().unwrap().to_string(),
        segments[0]["end"].as_str().unwrap().to_string(),
    );
    let tasks = vic.send(&f.app, "GET", "/api/pipeline/tasks", None).await;
    assert_eq!(tasks.status, StatusCode::OK);
    let items = tasks.json();
    let items = items
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "source:items")
        .unwrap()
        .clone();
    assert_eq!(items["holes"], missing, "{items}");

    // Only an admin starts a backfill, with the CSRF token.
    let body = json!({"task": "items", "from": from, "to": to, "reprocess": "none"});
    let r = vic
        .send(
            &f.app,
            "POST",
            "/api/pipeline/backfills",
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let mut no_token = Client {
        cookies: ada.cookies.clone(),
        csrf: String::new(),
        ip: String::new(),
    };
    let r = no_token
        .send(
            &f.app,
            "POST",
            "/api/pipeline/backfills",
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert_eq!(
        vic.send(&f.app, "GET", "/api/pipeline/backfills", None)
            .await
            .json(),
        json!([])
    );

    // While the API is down, the backfill fails: its intervals become failed holes, with the
    // server's message and without the secret.
    let r = ada
        .send(&f.app, "POST", "/api/pipeline/backfills", Some(body))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    assert_eq!(r.json()["total"], missing);
    assert_eq!(r.json()["started_by"], "ada");
    let list = settled(&mut ada, &f.app).await;
    assert_eq!(list[0]["status"], "failed", "{list}");
    assert_eq!(list[0]["failed"], missing, "{list}");
    let c = coverage(&mut vic, &f.app).await;
    assert_eq!(c["counts"], json!({"failed": missing}), "{c}");
    let error = c["segments"][0]["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("500") && error.contains("upstream broke"),
        "{error}"
    );
    let runs = vic
        .send(
            &f.app,
            "GET",
            "/api/pipeline/runs?task=items&failed=true",
            None,
        )
        .await;
    assert_eq!(runs.status, StatusCode::OK, "{}", runs.text());
    let runs = runs.json();
    assert_eq!(runs.as_array().unwrap().len() as u64, missing, "{runs}");
    assert_eq!(runs[0]["trigger"], "backfill");
    assert_eq!(runs[0]["status"], "failed");

    // The API is back: a retry of the failed range fills every hole.
    api.down.store(false, Ordering::SeqCst);
    let r = ada
        .send(
            &f.app,
            "POST",
            "/api/pipeline/backfills",
            Some(json!({"task": "source:items", "from": from, "to": to, "reprocess": "failed"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text());
    let list = settled(&mut ada, &f.app).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(
        (&list[0]["status"], &list[0]["done"]),
        (&json!("succeeded"), &json!(missing)),
        "{list}"
    );
    let c = coverage(&mut vic, &f.app).await;
    assert_eq!(c["counts"], json!({"done": missing}), "{c}");
    assert_eq!(c["holes"], 0);
    assert_eq!(c["segments"].as_array().unwrap().len(), 1);
    let rows = f.warehouse.query("SELECT count(*) AS n FROM items").await;
    assert!(rows.is_ok(), "the backfill loaded its table");

    // The daily quota counts each request of both backfills (one per interval: no retry).
    let limits = vic.send(&f.app, "GET", "/api/pipeline/limits", None).await;
    assert_eq!(limits.status, StatusCode::OK, "{}", limits.text());
    let limits = limits.json();
    let items = limits
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["scope"] == "source:items")
        .unwrap_or_else(|| panic!("{limits}"))
        .clone();
    assert_eq!(
        (
            &items["per_second"],
            &items["per_day"],
            &items["used_today"]
        ),
        (&json!(50), &json!(100), &json!(2 * missing)),
        "{items}"
    );
    assert_eq!(items["next_allowed"], Value::Null);
    let host = limits
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["scope"] == "host:127.0.0.1")
        .unwrap_or_else(|| panic!("{limits}"))
        .clone();
    assert_eq!(host["per_minute"], 6000);

    // The log is for admins.
    let r = vic.send(&f.app, "GET", "/api/pipeline/logs", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = ada
        .send(&f.app, "GET", "/api/pipeline/logs?level=warn&after=0", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(
        r.json()["records"].is_array() && r.json()["last"].is_u64(),
        "{}",
        r.text()
    );

    // No page of the pipeline shows the secret, whoever asks.
    for path in [
        "/api/pipeline/tasks",
        "/api/pipeline/coverage",
        "/api/pipeline/runs",
        "/api/pipeline/backfills",
        "/api/pipeline/limits",
    ] {
        for client in [&mut vic, &mut ada] {
            let r = client.send(&f.app, "GET", path, None).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text());
            assert!(!r.text().contains(SECRET), "{path} shows the secret");
        }
    }
}

#[tokio::test]
async fn pipeline_requests_that_cannot_be_answered_say_why() {
    let api = Api::start().await;
    let f = fixture_env(&project(&api), &[("API_TOKEN", SECRET)]).await;
    let mut anonymous = Client::default();
    assert_eq!(
        anonymous
            .send(&f.app, "GET", "/api/pipeline/coverage", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let mut ada = Client::default();
    ada.login(&f.app, "ada", "correct horse").await;
    for (path, status, says) in [
        (
            "/api/pipeline/coverage?task=nope",
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            "/api/pipeline/coverage?from=yesterday-ish",
            StatusCode::BAD_REQUEST,
            "`from`",
        ),
        (
            "/api/pipeline/coverage?from=2024-02-01&to=2024-01-01",
            StatusCode::BAD_REQUEST,
            "must be after",
        ),
        (
            "/api/pipeline/runs?limit=0",
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "/api/pipeline/logs?limit=0",
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "/api/pipeline/logs?level=loud",
            StatusCode::BAD_REQUEST,
            "level",
        ),
        (
            "/api/pipeline/runs?failed=maybe",
            StatusCode::BAD_REQUEST,
            "failed",
        ),
    ] {
        let r = ada.send(&f.app, "GET", path, None).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(
            r.json()["error"].as_str().unwrap().contains(says),
            "{path}: {}",
            r.text()
        );
    }
    for (body, status, says) in [
        (
            json!({"task": "nope", "from": "2024-01-01", "to": "2024-01-02"}),
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            json!({"task": "items", "from": "2024-01-02", "to": "2024-01-01"}),
            StatusCode::BAD_REQUEST,
            "after",
        ),
        (
            json!({"task": "items", "from": "2024-01-01", "to": "2099-01-01"}),
            StatusCode::BAD_REQUEST,
            "in the future",
        ),
        (
            json!({"task": "items", "from": "2024-01-01T00:10:00Z", "to": "2024-01-01T00:20:00Z"}),
            StatusCode::BAD_REQUEST,
            "no complete interval",
        ),
        (
            json!({"task": "items", "from": "2024-01-01", "to": "2024-01-02", "reprocess": "some"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reprocess",
        ),
    ] {
        let r = ada
            .send(
                &f.app,
                "POST",
                "/api/pipeline/backfills",
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, status, "{body}: {}", r.text());
        assert!(
            r.json()["error"].as_str().unwrap().contains(says),
            "{body}: {}",
            r.text()
        );
    }
    // Nothing was started.
    assert_eq!(
        ada.send(&f.app, "GET", "/api/pipeline/backfills", None)
            .await
            .json(),
        json!([])
    );
}

/// The fixture's project with a `lineage` on its daily chart.
fn with_lineage(lineage: &str) -> String {
    let text = PROJECT.replace(
        "\n[pages.visits.panels.rows]",
        &format!("lineage = \"{lineage}\"\n\n[pages.visits.panels.rows]"),
    );
    assert_ne!(text, PROJECT);
    text
}

#[tokio::test]
async fn a_chart_points_lineage_lists_its_entries_and_admins_open_the_raw_response() {
    let f = fixture_from(&with_lineage(
        "SELECT _affluent_entry FROM counts WHERE agency = $agency AND day = $point_day",
    ))
    .await;
    let mut vic = Client::default();
    vic.login(&f.app, "vic", "viewer pass").await;
    let path = "/api/pages/visits/panels/daily/lineage?agency=a&point.day=2024-03-05";
    let r = vic.send(&f.app, "GET", path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let l = r.json();
    assert_eq!(
        l["upstream"],
        json!([{"name": "counts", "kind": "table", "source": "counts", "reads": []}])
    );
    let entries = l["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{l}");
    let e = &entries[0];
    // Agency a has counters 0 and 1 that day: two rows of the CSV's one entry.
    assert_eq!(
        (&e["source"], &e["rows"]),
        (&json!("counts"), &json!(2)),
        "{e}"
    );
    assert!(e["url"].as_str().unwrap().ends_with("counts.csv"), "{e}");
    let entry = e["entry"].as_str().unwrap().to_string();
    // The same as the table's own lineage column says.
    let want = f
        .warehouse
        .query("SELECT DISTINCT CAST(_affluent_entry AS VARCHAR) FROM counts")
        .await
        .unwrap();
    let want = affluent_tables::query::render(&want, affluent_tables::OutputFormat::Csv).unwrap();
    assert!(want.contains(&entry), "{want}");

    // The raw response is for admins: the file as it was landed.
    let raw = format!("/api/landing/counts/{entry}");
    assert_eq!(
        vic.send(&f.app, "GET", &raw, None).await.status,
        StatusCode::FORBIDDEN
    );
    let mut ada = Client::default();
    ada.login(&f.app, "ada", "correct horse").await;
    let r = ada.send(&f.app, "GET", &raw, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let body = r.json()["body"].as_str().unwrap().to_string();
    assert!(
        body.starts_with("day,agency,counter,visits\n") && body.contains("\n2024-03-05,a,1,14\n"),
        "{body}"
    );
    assert_eq!(r.json()["truncated"], false);

    // What cannot be answered says why.
    for (path, status, says) in [
        (
            "/api/pages/visits/panels/daily/lineage?agency=a",
            StatusCode::BAD_REQUEST,
            "point.day",
        ),
        (
            "/api/pages/visits/panels/daily/lineage?agency=a&point.day%3B=1",
            StatusCode::BAD_REQUEST,
            "not a point column",
        ),
        (
            "/api/landing/nope/x",
            StatusCode::NOT_FOUND,
            "no source named `nope`",
        ),
        (
            "/api/landing/counts/not-an-entry",
            StatusCode::NOT_FOUND,
            "no landing entry",
        ),
    ] {
        let r = ada.send(&f.app, "GET", path, None).await;
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(r.text().contains(says), "{path}: {}", r.text());
    }
    // A panel without `lineage` still tells what it reads.
    let r = ada
        .send(
            &f.app,
            "GET",
            "/api/pages/visits/panels/top/lineage?point.agency=a",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["upstream"][0]["name"], "counts");
    assert!(
        r.json()["note"]
            .as_str()
            .unwrap()
            .contains("declares no `lineage`")
    );
}

#[test]
fn a_lineage_must_select_the_entry_and_bind_only_filters_and_points() {
    let dir = tempfile::tempdir().unwrap();
    for (lineage, says) in [
        (
            "SELECT day FROM counts WHERE day = $point_day",
            "must select `_affluent_entry`",
        ),
        (
            "SELECT _affluent_entry FROM counts WHERE agency = $agencyy",
            "`$agencyy` is not a filter of page `visits`; did you mean `$agency`?",
        ),
    ] {
        let err = affluent_config::load_str(
            dir.path(),
            &dir.path().join("affluent.toml"),
            &with_lineage(lineage),
            &Environment::from_map(BTreeMap::new()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(says), "{lineage}: {err}");
    }
}

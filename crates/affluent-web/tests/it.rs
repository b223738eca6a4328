//! The dashboard's handlers, through the whole router with `oneshot`: a real project with a
//! CSV source loaded into Delta tables, a SQLite state store, real sessions and CSRF cookies.

#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::BTreeMap;
use std::sync::Arc;

use affluent_config::Environment;
use affluent_sources::{Connectors, IngestOptions};
use affluent_state::Store;
use affluent_tables::{LoadScope, Warehouse};
use affluent_web::{AppState, Role};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt;

#[path = "it/alerts.rs"]
mod alerts;
#[path = "it/lists.rs"]
mod lists;
#[path = "it/login.rs"]
mod login;
#[path = "it/pipeline.rs"]
mod pipeline;

const PROJECT: &str = r#"
name = "visits"
timezone = "Europe/Paris"

[sources.counts]
type = "csv"
path = "counts.csv"
columns = { day = "string", agency = "string", counter = "int", visits = "int" }

[tables.counts]
source = "counts"
[tables.counts.columns]
day = { path = "day", type = "date" }
agency = { path = "agency", type = "string" }
counter = { path = "counter", type = "int" }
visits = { path = "visits", type = "int" }

[dashboard]
title = "Visits"
locale = "fr-FR"

[pages.visits]
title = "Visits"
favourite = ["agency", "counter"]

[pages.visits.filters.agency]
kind = "select"
sql = "SELECT DISTINCT agency FROM counts ORDER BY 1"

[pages.visits.filters.counter]
kind = "select"
all = true
sql = "SELECT DISTINCT counter FROM counts WHERE agency = $agency ORDER BY 1"

[pages.visits.filters.period]
kind = "period"
default = "last_4_weeks"
anchor_sql = "SELECT max(day) FROM counts"

[pages.visits.panels.total]
kind = "kpi"
sql = "SELECT sum(visits) FROM counts WHERE agency = $agency AND ($counter IS NULL OR counter = $counter) AND day >= $period_start AND day < $period_end"

[pages.visits.panels.daily]
kind = "line"
sql = "SELECT day, sum(visits) AS visits FROM counts WHERE agency = $agency AND ($counter IS NULL OR counter = $counter) AND day >= $period_start AND day < $period_end GROUP BY day ORDER BY day"

[pages.visits.panels.rows]
kind = "table"
limit = 10
sql = "SELECT day, counter, visits FROM counts WHERE agency = $agency AND day >= $period_start AND day < $period_end ORDER BY day DESC, counter"

[pages.visits.panels.top]
kind = "top"
limit = 2
sql = "SELECT agency, sum(visits) AS visits FROM counts GROUP BY agency"

[pages.visits.panels.where]
kind = "map"
geojson = "zones.geojson"
sql = "SELECT 2.35 AS lon, 48.85 AS lat, agency AS label, sum(visits) AS value FROM counts GROUP BY agency"

[pages.visits.panels.broken]
kind = "line"
sql = "SELECT nope FROM counts"
"#;

/// 60 days from 2024-03-01 for agencies a, b, c with counters 0 and 1: visits = day index + 10
/// × counter (agency c only has counter 0).
fn counts_csv() -> String {
    let mut out = String::from("day,agency,counter,visits\n");
    let start = jiff::civil::date(2024, 3, 1);
    for i in 0..60i64 {
        let day = start.checked_add(jiff::Span::new().days(i)).unwrap();
        for agency in ["a", "b", "c"] {
            for counter in 0..2i64 {
                if agency == "c" && counter == 1 {
                    continue;
                }
                out.push_str(&format!("{day},{agency},{counter},{}\n", i + 10 * counter));
            }
        }
    }
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    app: Router,
    state: AppState,
    warehouse: Warehouse,
}

async fn fixture() -> Fixture {
    fixture_with("").await
}

/// The fixture with `dashboard` keys added to `[dashboard]`.
async fn fixture_with(dashboard: &str) -> Fixture {
    fixture_from(&PROJECT.replace(
        "locale = \"fr-FR\"\n",
        &format!("locale = \"fr-FR\"\n{dashboard}"),
    ))
    .await
}

/// The fixture with another project file.
async fn fixture_from(project: &str) -> Fixture {
    fixture_env(project, &[]).await
}

/// The fixture with another project file and these environment variables.
async fn fixture_env(project: &str, env: &[(&str, &str)]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("affluent.toml"), project).unwrap();
    std::fs::write(dir.path().join("counts.csv"), counts_csv()).unwrap();
    std::fs::write(
        dir.path().join("zones.geojson"),
        r#"{"type":"FeatureCollection","features":[]}"#,
    )
    .unwrap();
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>();
    let project = affluent_config::load_with_env(dir.path(), &Environment::from_map(env)).unwrap();
    let connectors = Arc::new(Connectors::new(project).unwrap());
    connectors
        .ingest(
            "counts",
            &IngestOptions {
                interval: None,
                observer: None,
                recorder: None,
            },
        )
        .await
        .unwrap();
    let warehouse = Warehouse::new(connectors);
    warehouse
        .load_source("counts", &LoadScope::Pending)
        .await
        .unwrap();
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("state.db").display()
    ))
    .await
    .unwrap();
    let state = AppState::new(warehouse.clone(), store.clone())
        .await
        .unwrap();
    state
        .users
        .add("ada", "correct horse", Role::Admin)
        .await
        .unwrap();
    state
        .users
        .add("vic", "viewer pass", Role::Viewer)
        .await
        .unwrap();
    let app = affluent_web::api::router(
        state.clone(),
        affluent_web::sessions::SqlSessions::new(store.pool().clone()),
    );
    Fixture {
        _dir: dir,
        app,
        state,
        warehouse,
    }
}

/// The dashboard's log lines while installed (on this test's thread).
#[derive(Default, Clone)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let sink = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A browser: cookies kept between requests, the CSRF token of the last /api/session.
#[derive(Default, Clone)]
struct Client {
    cookies: BTreeMap<String, String>,
    csrf: String,
    ip: String,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Client {
    async fn send(&mut self, app: &Router, method: &str, uri: &str, body: Option<Value>) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if !self.cookies.is_empty() {
            let cookie = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            req = req.header(header::COOKIE, cookie);
        }
        if method != "GET" && !self.csrf.is_empty() {
            req = req.header("x-csrf-token", &self.csrf);
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).unwrap();
        let ip: std::net::IpAddr = if self.ip.is_empty() {
            "10.0.0.1".parse().unwrap()
        } else {
            self.ip.parse().unwrap()
        };
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(
                ip, 40000,
            )));
        let res = app.clone().oneshot(req).await.unwrap();
        for value in res.headers().get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if text.contains("Max-Age=0") || v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn session(&mut self, app: &Router) -> Value {
        let r = self.send(app, "GET", "/api/session", None).await;
        assert_eq!(r.status, StatusCode::OK);
        let v = r.json();
        self.csrf = v["csrf"].as_str().unwrap().to_string();
        v
    }

    async fn login(&mut self, app: &Router, name: &str, password: &str) -> Reply {
        self.session(app).await;
        self.send(
            app,
            "POST",
            "/api/login",
            Some(json!({"name": name, "password": password})),
        )
        .await
    }
}

#[tokio::test]
async fn anonymous_visitors_reach_only_the_login_health_metrics_and_docs() {
    let f = fixture().await;
    let mut c = Client::default();
    let r = c.send(&f.app, "GET", "/pages/visits?agency=a", None).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers[header::LOCATION],
        "/login?next=/pages/visits%3Fagency%3Da"
    );
    for uri in [
        "/api/pages",
        "/api/pages/visits/panels/total",
        "/api/pages/visits/panels/total/csv",
        "/api/favourites",
        "/api/events",
        "/api/users",
    ] {
        let r = c.send(&f.app, "GET", uri, None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(r.json()["error"], "log in first");
    }
    assert_eq!(
        c.send(&f.app, "GET", "/login", None).await.status,
        StatusCode::OK
    );
    let health = c.send(&f.app, "GET", "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "ok");
    let spec = c
        .send(&f.app, "GET", "/api/openapi.json", None)
        .await
        .json();
    for path in [
        "/api/login",
        "/api/pages/{page}/panels/{panel}",
        "/api/favourites",
    ] {
        assert!(spec["paths"].get(path).is_some(), "{path} documented");
    }
    let docs = c.send(&f.app, "GET", "/api/docs", None).await;
    assert!(docs.text().contains("/assets/swagger-ui-bundle.js"));
    let bundle = c
        .send(&f.app, "GET", "/assets/swagger-ui-bundle.js", None)
        .await;
    assert_eq!(bundle.status, StatusCode::OK);
    assert!(bundle.body.len() > 100_000);
    let echarts = c.send(&f.app, "GET", "/assets/echarts.min.js", None).await;
    assert!(echarts.text().contains("echarts"));
    let metrics = c.send(&f.app, "GET", "/metrics", None).await.text();
    assert!(
        metrics.contains(
            r#"affluent_http_requests_total{method="GET",route="/healthz",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains("affluent_http_request_duration_seconds_bucket"));
    // Security headers on every answer.
    assert_eq!(health.headers["x-frame-options"], "DENY");
    assert!(
        health.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
}

#[tokio::test]
async fn login_sets_a_strict_http_only_session_and_logout_ends_it() {
    let f = fixture().await;
    let mut c = Client::default();
    let r = c.login(&f.app, "ada", "correct horse").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let cookie = r
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("affluent_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");
    assert_eq!(r.json()["user"], "ada");
    assert_eq!(r.json()["role"], "admin");
    let pages = c.send(&f.app, "GET", "/api/pages", None).await;
    assert_eq!(pages.status, StatusCode::OK);
    assert_eq!(pages.json()[0]["name"], "visits");
    let home = c.send(&f.app, "GET", "/", None).await;
    assert_eq!(home.headers[header::LOCATION], "/pages/visits");

    let out = c.send(&f.app, "POST", "/api/logout", None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let after = c.send(&f.app, "GET", "/api/pages", None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn state_changing_requests_need_the_csrf_token() {
    let f = fixture().await;
    let mut c = Client::default();
    c.session(&f.app).await;
    // No token: refused before the password is even looked at.
    let mut no_token = c.clone();
    no_token.csrf.clear();
    let r = no_token
        .send(
            &f.app,
            "POST",
            "/api/login",
            Some(json!({"name": "ada", "password": "correct horse"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].as_str().unwrap().contains("CSRF"));
    // A token that is not this browser's.
    let mut forged = c.clone();
    forged.csrf = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_string();
    let r = forged
        .send(
            &f.app,
            "POST",
            "/api/login",
            Some(json!({"name": "ada", "password": "correct horse"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // The token of another browser's cookie.
    let mut other = Client::default();
    other.session(&f.app).await;
    let mut mixed = c.clone();
    mixed.csrf = other.csrf.clone();
    let r = mixed
        .send(
            &f.app,
            "POST",
            "/api/login",
            Some(json!({"name": "ada", "password": "correct horse"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Logged in, a favourite without the token is refused too.
    assert_eq!(
        c.login(&f.app, "ada", "correct horse").await.status,
        StatusCode::OK
    );
    let mut stale = c.clone();
    stale.csrf.clear();
    let r = stale
        .send(
            &f.app,
            "POST",
            "/api/favourites",
            Some(json!({"page": "visits", "params": {"agency": "a", "counter": "0"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn panels_bind_the_filters_of_the_url() {
    let f = fixture().await;
    let mut c = Client::default();
    c.login(&f.app, "ada", "correct horse").await;

    // Defaults: the first agency, All counters, the 4 weeks ending on the last day with data.
    let filters = c
        .send(&f.app, "GET", "/api/pages/visits/filters", None)
        .await
        .json();
    assert_eq!(filters[0]["value"][0], "a");
    assert_eq!(filters[1]["value"][0], "*");
    assert_eq!(filters[1]["options"].as_array().unwrap().len(), 2);
    assert_eq!(filters[2]["start"], "2024-04-02");
    assert_eq!(filters[2]["end"], "2024-04-29");

    // A week of agency b, counter 1: 7 points, visits = day index + 10.
    let q = "agency=b&counter=1&period=2024-03-04..2024-03-10";
    let daily = c
        .send(
            &f.app,
            "GET",
            &format!("/api/pages/visits/panels/daily?{q}"),
            None,
        )
        .await;
    assert_eq!(daily.status, StatusCode::OK, "{}", daily.text());
    let daily = daily.json();
    let rows = daily["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[0], json!(["2024-03-04", 13]));
    assert_eq!(rows[6], json!(["2024-03-10", 19]));
    assert_eq!(daily["columns"][0]["kind"], "date");

    // KPI with the previous period of the same length.
    let kpi = c
        .send(
            &f.app,
            "GET",
            &format!("/api/pages/visits/panels/total?{q}"),
            None,
        )
        .await
        .json();
    assert_eq!(kpi["rows"][0][0], json!((13..=19).sum::<i64>()));
    assert_eq!(kpi["compare"]["previous_start"], "2024-02-26");
    assert_eq!(kpi["compare"]["previous_end"], "2024-03-03");
    // Only 2024-03-01..03 have data before: (0+10)+(1+10)+(2+10).
    assert_eq!(kpi["compare"]["previous"], json!(33));
    let pct = kpi["compare"]["change_pct"].as_f64().unwrap();
    assert!((pct - (112.0 / 33.0 - 1.0) * 100.0).abs() < 1e-9, "{pct}");

    // All counters: both summed.
    let all = c
        .send(
            &f.app,
            "GET",
            "/api/pages/visits/panels/total?agency=b&counter=*&period=2024-03-04..2024-03-04",
            None,
        )
        .await
        .json();
    assert_eq!(all["rows"][0][0], json!(3 + 13));

    // A value is a value, never SQL: a value the filter does not offer falls back to the
    // default agency, and nothing widens the query to every agency.
    let evil = c
        .send(
            &f.app,
            "GET",
            "/api/pages/visits/panels/total?agency=a'%20OR%20'1'='1&counter=*&period=all",
            None,
        )
        .await;
    assert_eq!(evil.status, StatusCode::OK, "{}", evil.text());
    let only_a: i64 = (0..60).sum::<i64>() + (10..70).sum::<i64>();
    assert_eq!(evil.json()["rows"][0][0], json!(only_a));
    assert_eq!(
        evil.json()["compare"],
        Value::Null,
        "no period before `all`"
    );
    // Bound as a value where no option list applies (the period): an error, not SQL.
    let evil_period = c
        .send(
            &f.app,
            "GET",
            "/api/pages/visits/panels/total?period=2024-03-01'--..2024-03-02",
            None,
        )
        .await;
    assert_eq!(evil_period.status, StatusCode::BAD_REQUEST);

    // Bad filter values are clear 400s.
    for (uri, needle) in [
        (
            "/api/pages/visits/panels/daily?period=2024-05-01..2024-04-01",
            "ends before it starts",
        ),
        (
            "/api/pages/visits/panels/daily?period=yesterday",
            "unknown period",
        ),
        ("/api/pages/visits/panels/rows?_offset=-1", "non-negative"),
        (
            "/api/pages/visits/panels/rows?_sort=nope",
            "cannot sort on `nope`",
        ),
    ] {
        let r = c.send(&f.app, "GET", uri, None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            r.json()["error"].as_str().unwrap().contains(needle),
            "{}",
            r.text()
        );
    }
    // A panel whose query fails says which, as JSON, with the request's id and none of the
    // engine's text; the server's log has the detail under the same id.
    let logs = CapturedLogs::default();
    let broken = {
        let _guard = logs.install();
        c.send(&f.app, "GET", "/api/pages/visits/panels/broken", None)
            .await
    };
    assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = broken.json();
    let id = body["request_id"].as_str().unwrap().to_string();
    assert_eq!(broken.headers["x-request-id"], id.as_str());
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("panel `broken`") && message.contains(&id),
        "{message}"
    );
    for internal in ["nope", "Schema", "field", "counts"] {
        assert!(!message.contains(internal), "{internal} leaked: {message}");
    }
    let log = logs.text();
    assert!(
        log.contains(&format!("request_id={id}"))
            && log.contains("panel `broken` failed")
            && log.contains("nope"),
        "{log}"
    );
    // Unknown pages and panels.
    assert_eq!(
        c.send(&f.app, "GET", "/api/pages/nope/panels/daily", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        c.send(&f.app, "GET", "/api/pages/visits/panels/nope", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // An empty period is rows: [], which the page shows as "no data".
    let empty = c
        .send(
            &f.app,
            "GET",
            "/api/pages/visits/panels/daily?period=2023-01-01..2023-01-31",
            None,
        )
        .await
        .json();
    assert_eq!(empty["rows"], json!([]));
}

#[tokio::test]
async fn tables_sort_page_and_export_every_row() {
    let f = fixture().await;
    let mut c = Client::default();
    c.login(&f.app, "ada", "correct horse").await;
    let q = "agency=a&period=2024-03-01..2024-03-31";
    // The query's own order: newest day first, 62 rows, pages of 10.
    let first = c
        .send(
            &f.app,
            "GET",
            &format!("/api/pages/visits/panels/rows?{q}"),
            None,
        )
        .await
        .json();
    assert_eq!(first["total"], 62);
    assert_eq!(first["rows"].as_array().unwrap().len(), 10);
    assert_eq!(first["rows"][0], json!(["2024-03-31", 0, 30]));
    let last = c
        .send(
            &f.app,
            "GET",
            &format!("/api/pages/visits/panels/rows?{q}&_offset=60"),
            None,
        )
        .await
        .json();
    assert_eq!(
        last["rows"],
        json!([["2024-03-01", 0, 0], ["2024-03-01", 1, 10]])
    );
    // Sorted by the user.
    let sorted = c
        .send(
            &f.app,
            "GET",
            &format!("/api/pages/visits/panels/rows?{q}&_sort=visits&_dir=desc"),
            None,
        )
        .await
        .json();
    assert_eq!(sorted["rows"][0], json!(["2024-03-31", 1, 40]));
    // CSV: every row (not the page), with a header, as a download.
    let csv = c
        .send(
            &f.app,
            "GET",
            &format!("/api/pages/visits/panels/rows/csv?{q}"),
            None,
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_eq!(csv.headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(
        csv.headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("visits-rows.csv")
    );
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "day,counter,visits");
    assert_eq!(lines.len(), 1 + 62);
    assert_eq!(lines[1], "2024-03-31,0,30");
    // Top-N cuts and orders by the value.
    let top = c
        .send(&f.app, "GET", "/api/pages/visits/panels/top", None)
        .await
        .json();
    let top_rows = top["rows"].as_array().unwrap();
    assert_eq!(top_rows.len(), 2);
    // a and b tie at 4,140; c (1,770) is cut.
    let mut names: Vec<&str> = top_rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, vec!["a", "b"]);
    assert_eq!(top_rows[0][1], json!(4140));
    // The map panel's points and its GeoJSON background.
    let map = c
        .send(&f.app, "GET", "/api/pages/visits/panels/where", None)
        .await
        .json();
    assert_eq!(map["rows"].as_array().unwrap().len(), 3);
    let geo = c
        .send(
            &f.app,
            "GET",
            "/api/pages/visits/panels/where/geojson",
            None,
        )
        .await;
    assert_eq!(geo.json()["type"], "FeatureCollection");
}

#[tokio::test]
async fn favourites_are_kept_across_sessions_and_per_user() {
    let f = fixture().await;
    let mut c = Client::default();
    c.login(&f.app, "vic", "viewer pass").await;
    let r = c
        .send(
            &f.app,
            "POST",
            "/api/favourites",
            Some(json!({"page": "visits", "params": {"counter": "1", "agency": "b"}, "label": "b · counter 1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    // Starring again keeps one.
    c.send(
        &f.app,
        "POST",
        "/api/favourites",
        Some(json!({"page": "visits", "params": {"agency": "b", "counter": "1"}, "label": "b · counter 1"})),
    )
    .await;
    // Wrong keys are refused.
    let bad = c
        .send(
            &f.app,
            "POST",
            "/api/favourites",
            Some(json!({"page": "visits", "params": {"agency": "b"}})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    c.send(&f.app, "POST", "/api/logout", None).await;

    let mut again = Client::default();
    again.login(&f.app, "vic", "viewer pass").await;
    let favs = again
        .send(&f.app, "GET", "/api/favourites", None)
        .await
        .json();
    assert_eq!(favs.as_array().unwrap().len(), 1);
    assert_eq!(favs[0]["label"], "b · counter 1");
    assert_eq!(favs[0]["params"], json!({"agency": "b", "counter": "1"}));
    // Another user sees none of them.
    let mut ada = Client::default();
    ada.login(&f.app, "ada", "correct horse").await;
    assert_eq!(
        ada.send(&f.app, "GET", "/api/favourites", None)
            .await
            .json(),
        json!([])
    );
    let id = favs[0]["id"].as_str().unwrap();
    assert_eq!(
        ada.send(&f.app, "DELETE", &format!("/api/favourites/{id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let gone = again
        .send(&f.app, "DELETE", &format!("/api/favourites/{id}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        again
            .send(&f.app, "GET", "/api/favourites", None)
            .await
            .json(),
        json!([])
    );
}

#[tokio::test]
async fn viewers_cannot_reach_admin_actions() {
    let f = fixture().await;
    let mut vic = Client::default();
    vic.login(&f.app, "vic", "viewer pass").await;
    assert_eq!(
        vic.send(&f.app, "GET", "/api/users", None).await.status,
        StatusCode::FORBIDDEN
    );
    let r = vic
        .send(
            &f.app,
            "POST",
            "/api/users",
            Some(json!({"name": "eve", "password": "12345678", "role": "admin"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        vic.send(&f.app, "DELETE", "/api/users/ada", None)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let mut ada = Client::default();
    ada.login(&f.app, "ada", "correct horse").await;
    let r = ada
        .send(
            &f.app,
            "POST",
            "/api/users",
            Some(json!({"name": "eve", "password": "short", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = ada
        .send(
            &f.app,
            "POST",
            "/api/users",
            Some(json!({"name": "eve", "password": "long enough", "role": "viewer"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json().as_array().unwrap().len(), 3);
    // A removed user is out at once, even with a live session.
    assert_eq!(
        ada.send(&f.app, "DELETE", "/api/users/vic", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        vic.send(&f.app, "GET", "/api/pages", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Passwords are stored as argon2id hashes.
    let row: (String,) =
        sqlx::query_as("SELECT password_hash FROM affluent_users WHERE name = 'ada'")
            .fetch_one(f.state.store.pool())
            .await
            .unwrap();
    assert!(row.0.starts_with("$argon2id$"), "{}", row.0);
    assert!(!row.0.contains("correct horse"));
}

#[tokio::test]
async fn the_setup_link_creates_the_first_admin_once() {
    let f = fixture().await;
    for name in ["ada", "vic"] {
        f.state.users.remove(name).await.unwrap();
    }
    let token = f
        .state
        .setup_token()
        .await
        .unwrap()
        .expect("no user: a token");
    let mut c = Client::default();
    let s = c.session(&f.app).await;
    assert_eq!(s["setup_required"], true);
    let wrong = c
        .send(
            &f.app,
            "POST",
            "/api/setup",
            Some(json!({"token": "0000", "name": "root", "password": "long enough"})),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let ok = c
        .send(
            &f.app,
            "POST",
            "/api/setup",
            Some(json!({"token": token, "name": "root", "password": "long enough"})),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json()["role"], "admin");
    // Used once: no second admin through the same link.
    let again = c
        .send(
            &f.app,
            "POST",
            "/api/setup",
            Some(json!({"token": token, "name": "root2", "password": "long enough"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_new_commit_swaps_the_reader_and_is_announced() {
    let f = fixture().await;
    let mut changes = f.state.live.subscribe();
    assert!(
        f.state.live.check().await.unwrap().is_none(),
        "nothing new yet"
    );
    // More rows land and load: a new commit of `counts`.
    let csv = "day,agency,counter,visits\n2024-05-01,d,0,5\n";
    let dir = f.warehouse.project().dir.clone();
    std::fs::write(
        dir.join("counts.csv"),
        format!("{}{}", counts_csv(), &csv[26..]),
    )
    .unwrap();
    f.warehouse
        .connectors()
        .ingest(
            "counts",
            &IngestOptions {
                interval: None,
                observer: None,
                recorder: None,
            },
        )
        .await
        .unwrap();
    f.warehouse
        .load_source("counts", &LoadScope::Pending)
        .await
        .unwrap();
    let change = f.state.live.check().await.unwrap().expect("a change");
    assert_eq!(change.tables, vec!["counts".to_string()]);
    assert_eq!(
        changes.recv().await.unwrap().tables,
        vec!["counts".to_string()]
    );
    let mut c = Client::default();
    c.login(&f.app, "ada", "correct horse").await;
    let filters = c
        .send(&f.app, "GET", "/api/pages/visits/filters", None)
        .await
        .json();
    let agencies: Vec<&str> = filters[0]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(agencies, vec!["a", "b", "c", "d"]);
}

#[test]
fn a_parameter_no_filter_binds_is_a_config_error() {
    let text = PROJECT.replace("counter = $counter) AND day >= $period_start AND day < $period_end\"\n\n[pages.visits.panels.daily]", "counter = $countr) AND day >= $period_start AND day < $period_end\"\n\n[pages.visits.panels.daily]");
    assert_ne!(text, PROJECT);
    let dir = tempfile::tempdir().unwrap();
    let err = affluent_config::load_str(
        dir.path(),
        &dir.path().join("affluent.toml"),
        &text,
        &Environment::from_map(BTreeMap::new()),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("`$countr` is not a filter of page `visits`; did you mean `$counter`?"),
        "{err}"
    );
    assert!(err.contains("affluent.toml:"), "with a line: {err}");
}

#[tokio::test]
async fn answers_are_not_cached_and_invented_methods_make_no_metric() {
    let f = fixture().await;
    let mut c = Client::default();
    let session = c.send(&f.app, "GET", "/api/session", None).await;
    assert_eq!(session.headers["cache-control"], "no-store");
    let asset = c.send(&f.app, "GET", "/assets/echarts.min.js", None).await;
    assert_ne!(
        asset.headers["cache-control"], "no-store",
        "static assets stay cacheable"
    );
    let csp = session.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("form-action 'self'") && csp.contains("base-uri 'none'"),
        "{csp}"
    );
    assert!(
        session.headers.get("strict-transport-security").is_none(),
        "no HSTS over plain HTTP"
    );
    for method in ["ZZ000", "ZZ001", "PROPFIND"] {
        c.send(&f.app, method, "/healthz", None).await;
    }
    let metrics = c.send(&f.app, "GET", "/metrics", None).await.text();
    assert!(
        !metrics.contains("ZZ00") && !metrics.contains("PROPFIND"),
        "{metrics}"
    );

    // Behind TLS, browsers are told to stay on HTTPS.
    let mut secure = f.state.clone();
    secure.secure = true;
    let app = affluent_web::api::router(
        secure.clone(),
        affluent_web::sessions::SqlSessions::new(secure.store.pool().clone()),
    );
    let r = Client::default().send(&app, "GET", "/healthz", None).await;
    assert_eq!(r.headers["strict-transport-security"], "max-age=31536000");
}

#[path = "it/contract.rs"]
mod contract;

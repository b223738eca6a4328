//! Test support: a project in a temp dir, and an axum server that records every request.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use affluent_config::{Environment, Project};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;

pub(crate) fn fixture(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

pub(crate) fn fixture_json(path: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(path)).expect("fixture is JSON")
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub raw_query: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub at: Instant,
}

#[derive(Clone, Default)]
pub(crate) struct Log(pub Arc<Mutex<Vec<Hit>>>);

impl Log {
    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.0.lock().unwrap().clone()
    }
    pub(crate) fn count(&self, path: &str) -> usize {
        self.hits().iter().filter(|h| h.path == path).count()
    }
}

pub(crate) type Handler = Arc<dyn Fn(&Hit) -> Response + Send + Sync>;

/// Serves `handler` on a free port; every request is logged first.
pub(crate) async fn serve(handler: Handler) -> (SocketAddr, Log) {
    let log = Log::default();
    let state = (log.clone(), handler);
    let app = Router::new()
        .fallback(
            |State((log, handler)): State<(Log, Handler)>, req: Request| async move {
                let query: BTreeMap<String, String> = req
                    .uri()
                    .query()
                    .map(|q| {
                        url::form_urlencoded::parse(q.as_bytes())
                            .into_owned()
                            .collect()
                    })
                    .unwrap_or_default();
                let at = Instant::now();
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let req = Request::from_parts(parts, Body::empty());
                let hit = Hit {
                    body: String::from_utf8_lossy(&body).into_owned(),
                    path: req.uri().path().to_string(),
                    raw_query: req.uri().query().unwrap_or("").to_string(),
                    query,
                    headers: req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect(),
                    at,
                };
                log.0.lock().unwrap().push(hit.clone());
                handler(&hit)
            },
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, log)
}

pub(crate) fn json(status: u16, value: &serde_json::Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(value.to_string()))
        .unwrap()
}

pub(crate) fn raw(status: u16, headers: &[(&str, &str)], body: impl Into<Body>) -> Response {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body.into()).unwrap()
}

/// A project from TOML text in a fresh temp dir.
pub(crate) fn project(toml: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Project) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("affluent.toml"), toml).unwrap();
    let env = Environment::from_map(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    let project =
        affluent_config::load_with_env(dir.path(), &env).unwrap_or_else(|e| panic!("{e}"));
    (dir, project)
}

/// The same project loaded again (a restart).
pub(crate) fn reload(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Project {
    let env = Environment::from_map(
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    affluent_config::load_with_env(dir.path(), &env).unwrap()
}

pub(crate) fn interval(from: &str, to: &str) -> affluent_core::Interval {
    affluent_core::Interval::new(from.parse().unwrap(), to.parse().unwrap()).unwrap()
}

/// The options of a run over 2024-01-01 (UTC), no observer.
pub(crate) fn day_options() -> affluent_sources::IngestOptions {
    affluent_sources::IngestOptions {
        interval: Some(interval("2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z")),
        observer: None,
        recorder: None,
    }
}

/// One run of source `api` of a project over [`day_options`]'s day, in a fresh runtime.
pub(crate) async fn ingest_api(project: Project) -> affluent_sources::RunSummary {
    affluent_sources::Connectors::new(project)
        .unwrap()
        .ingest("api", &day_options())
        .await
        .unwrap()
}

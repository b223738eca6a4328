//! Credentials go only to `client.base_url`'s origin: a hostile upstream redirecting to, or
//! linking the next page on, another origin (another port on 127.0.0.1) gets them refused by
//! default, or sees a request without auth and secret headers with `cross_origin =
//! "without_credentials"`. A redirect within the origin keeps them.

use std::sync::Arc;

use affluent_sources::{Connectors, IngestOptions};
use serde_json::json;

use crate::support::*;

const TOKEN: &str = "tok-3f9a/secret+value";
const KEY: &str = "key-77_b";

fn opts() -> IngestOptions {
    day_options()
}

/// A source on `base` with a secret header and an api key in the query, and `extra` keys.
fn toml(base: impl std::fmt::Display, extra: &str) -> String {
    format!(
        "[sources.api]\ntype = \"rest\"\nclient.base_url = \"http://{base}/data\"\nclient.headers = {{ \"X-Auth-Token\" = \"${{TOKEN}}\", \"Accept\" = \"application/json\" }}\nclient.auth = {{ type = \"api_key\", name = \"apikey\", api_key = \"${{KEY}}\", location = \"query\" }}\nretry = {{ max_attempts = 1 }}\n{extra}\n"
    )
}

fn env() -> [(&'static str, &'static str); 2] {
    [("TOKEN", TOKEN), ("KEY", KEY)]
}

/// Whether a request carried any of the credentials, anywhere.
fn saw_credentials(hit: &Hit) -> bool {
    let all = format!("{:?} {}", hit.headers, hit.raw_query);
    all.contains(TOKEN) || all.contains(KEY) || hit.headers.contains_key("x-auth-token")
}

/// The other origin: records what it receives, answers records.
async fn elsewhere() -> (std::net::SocketAddr, Log) {
    serve(Arc::new(|_: &Hit| json(200, &json!([{"id": "elsewhere"}])))).await
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_and_the_other_host_sees_nothing() {
    let (other, other_log) = elsewhere().await;
    let target = format!("http://{other}/steal");
    let (base, log) = serve(Arc::new(move |_: &Hit| {
        raw(302, &[("location", target.as_str())], "")
    }))
    .await;
    let (_dir, project) = project(&toml(base, ""), &env());
    let s = ingest_api(project).await;
    assert_eq!(log.hits().len(), 1);
    assert!(saw_credentials(&log.hits()[0]), "the base origin gets them");
    assert!(other_log.hits().is_empty(), "{:?}", other_log.hits());
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    let e = &s.errors[0];
    assert!(
        e.contains("refused GET") && e.contains("cross_origin = \"without_credentials\""),
        "{e}"
    );
    assert!(!e.contains(TOKEN) && !e.contains(KEY), "{e}");
    assert_eq!(s.landed, 0);
}

#[tokio::test]
async fn without_credentials_the_other_origin_gets_a_bare_request() {
    let (other, other_log) = elsewhere().await;
    let target = format!("http://{other}/cdn");
    let (base, _log) = serve(Arc::new(move |_: &Hit| {
        raw(302, &[("location", target.as_str())], "")
    }))
    .await;
    let (_dir, project) = project(
        &toml(base, "client.cross_origin = \"without_credentials\""),
        &env(),
    );
    let s = ingest_api(project).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.landed, s.records), (1, 1));
    let hits = other_log.hits();
    assert_eq!(hits.len(), 1);
    assert!(!saw_credentials(&hits[0]), "{:?}", hits[0]);
    assert!(!hits[0].headers.contains_key("authorization"));
    // A header that is not secret still goes.
    assert_eq!(hits[0].headers["accept"], "application/json");
}

#[tokio::test]
async fn a_next_page_on_another_origin_is_refused_after_the_pages_before_it() {
    let (other, other_log) = elsewhere().await;
    let next = format!("http://{other}/page2");
    let (base, _log) = serve(Arc::new(move |_: &Hit| {
        json(200, &json!({"items": [{"id": 1}], "next": next}))
    }))
    .await;
    let (_dir, project) = project(
        &toml(
            base,
            "endpoint.data_selector = \"items\"\nclient.paginator = { type = \"json_link\", next_url_path = \"next\" }",
        ),
        &env(),
    );
    let s = ingest_api(project).await;
    assert!(other_log.hits().is_empty(), "{:?}", other_log.hits());
    assert_eq!(s.landed, 1, "the first page is kept");
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert!(s.errors[0].contains("refused GET"), "{}", s.errors[0]);
}

#[tokio::test]
async fn a_redirect_within_the_origin_keeps_the_credentials() {
    let (base, log) = serve(Arc::new(|hit: &Hit| {
        if hit.path == "/data" {
            raw(307, &[("location", "/moved")], "")
        } else {
            json(200, &json!([{"id": 1}, {"id": 2}]))
        }
    }))
    .await;
    let (_dir, project) = project(&toml(base, ""), &env());
    let s = ingest_api(project).await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.records, 2);
    let hits = log.hits();
    assert_eq!(
        hits.iter().map(|h| h.path.as_str()).collect::<Vec<_>>(),
        ["/data", "/moved"]
    );
    assert!(hits.iter().all(saw_credentials), "{hits:?}");
}

#[tokio::test]
async fn an_oauth_token_endpoint_redirect_is_not_followed() {
    let (other, other_log) = elsewhere().await;
    let target = format!("http://{other}/token");
    let (tokens, _) = serve(Arc::new(move |_: &Hit| {
        raw(307, &[("location", target.as_str())], "")
    }))
    .await;
    let (base, log) = serve(Arc::new(|_: &Hit| json(200, &json!([])))).await;
    let toml = format!(
        "[sources.api]\ntype = \"rest\"\nclient.base_url = \"http://{base}/data\"\nclient.auth = {{ type = \"oauth2_client_credentials\", access_token_url = \"http://{tokens}/oauth\", client_id = \"app\", client_secret = \"${{TOKEN}}\" }}\nretry = {{ max_attempts = 1 }}\n"
    );
    let (_dir, project) = project(&toml, &env());
    let s = Connectors::new(project)
        .unwrap()
        .ingest("api", &opts())
        .await;
    let text = match s {
        Ok(s) => s.errors.join("; "),
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("cannot obtain an OAuth access token"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
    assert!(
        other_log.hits().is_empty(),
        "the secret went to {:?}",
        other_log.hits()
    );
    assert!(log.hits().is_empty());
}

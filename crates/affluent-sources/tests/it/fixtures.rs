//! Real captures served through every paginator: exact record counts per capture.

use std::sync::Arc;

use affluent_sources::{Connectors, IngestOptions};
use serde_json::{Value, json};

use crate::captures::{self, page_of};
use crate::support::*;

async fn ingest(
    project: affluent_config::Project,
    source: &str,
) -> (Connectors, affluent_sources::RunSummary) {
    let c = Connectors::new(project).unwrap();
    let s = c
        .ingest(
            source,
            &IngestOptions {
                interval: Some(interval("2000-01-01T00:00:00Z", "2021-01-01T00:00:00Z")),
                observer: None,
                recorder: None,
            },
        )
        .await
        .unwrap();
    (c, s)
}

#[tokio::test]
async fn world_bank_page_number_with_total_path_and_static_fan_out() {
    let (addr, log) = serve(captures::world_bank_gdp()).await;
    let (_dir, project) = project(
        &format!(
            r#"
[sources.gdp]
type = "rest"
client.base_url = "http://{addr}/v2/"
endpoint.path = "country/{{country}}/indicator/NY.GDP.MKTP.CD"
endpoint.params = {{ format = "json", per_page = 20, date = "{{interval.start:%Y}}:{{interval.end - 1d:%Y}}" }}
endpoint.data_selector = "[1]"
endpoint.paginator = {{ type = "page_number", base_page = 1, total_path = "[0].pages" }}
fan_out.values = {{ country = ["bra", "chn"] }}
"#
        ),
        &[],
    );
    let (c, s) = ingest(project, "gdp").await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.records, 65 + 61);
    assert_eq!(s.landed, 4 + 4);
    assert_eq!(s.requests, 8);
    let hits = log.hits();
    assert!(
        hits.iter().all(|h| h.query["date"] == "2000:2020"),
        "{:?}",
        hits[0].query
    );
    let entries = c.landing().list("gdp").unwrap();
    assert_eq!(entries.len(), 8);
    // Landing alone gives the records back, no network.
    let replayed: usize = entries
        .iter()
        .map(|e| c.records_of(e).unwrap().0.len())
        .sum();
    assert_eq!(replayed, 126);
    assert_eq!(
        entries[0].meta.interval,
        Some(interval("2000-01-01T00:00:00Z", "2021-01-01T00:00:00Z"))
    );
}

#[tokio::test]
async fn ticketmaster_page_number_zero_based_with_api_key_in_query() {
    let (addr, log) = serve(captures::ticketmaster_events("tm-key-1234")).await;
    let (_dir, project) = project(
        &format!(
            r#"
[sources.events]
type = "rest"
[sources.events.client]
base_url = "http://{addr}/discovery/v2/"
auth = {{ type = "api_key", name = "apikey", api_key = "${{TM_KEY}}", location = "query" }}
[sources.events.endpoint]
path = "events.json"
params = {{ countryCode = "US", size = 8 }}
data_selector = "_embedded.events"
paginator = {{ type = "page_number", total_path = "page.totalPages" }}
"#
        ),
        &[("TM_KEY", "tm-key-1234")],
    );
    let (c, s) = ingest(project, "events").await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.records, s.landed), (20, 3));
    assert_eq!(
        log.hits()
            .iter()
            .map(|h| h.query["page"].clone())
            .collect::<Vec<_>>(),
        ["0", "1", "2"]
    );
    for e in c.landing().list("events").unwrap() {
        assert!(!e.meta.url.contains("tm-key-1234"), "{}", e.meta.url);
    }
}

#[tokio::test]
async fn opendatasoft_offset_with_total_count() {
    let (addr, _log) = serve(captures::velib_offset()).await;
    let (_dir, project) = project(
        &format!(
            r#"
[sources.velib]
type = "rest"
client.base_url = "http://{addr}/api/explore/v2.1/catalog/datasets/velib-disponibilite-en-temps-reel/records"
endpoint.data_selector = "results"
endpoint.paginator = {{ type = "offset", limit = 500, total_path = "total_count" }}
"#
        ),
        &[],
    );
    let (_c, s) = ingest(project, "velib").await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.records, s.landed, s.requests), (1471, 3, 3));
}

#[tokio::test]
async fn opendatasoft_ceiling_is_a_warning_not_a_silent_cut() {
    // 12,000 records; like Opendatasoft, offset + limit past 10,000 is refused.
    let rows: Vec<serde_json::Value> = (0..12_000).map(|i| json!({ "id": i })).collect();
    let (addr, log) = serve(Arc::new(move |hit: &Hit| {
        let limit: usize = hit.query["limit"].parse().unwrap();
        let offset: usize = hit.query["offset"].parse().unwrap();
        if offset + limit > 10_000 {
            return json(
                400,
                &json!({"error_code": "InvalidRESTParameterError", "message": "the sum of offset and limit must be lower than or equal to 10000; use the exports endpoint"}),
            );
        }
        json(
            200,
            &json!({"total_count": rows.len(), "results": page_of(&rows, offset, limit)}),
        )
    }))
    .await;
    let source = |maximum: &str| {
        format!(
            "[sources.points]\ntype = \"rest\"\nclient.base_url = \"http://{addr}/records\"\nendpoint.data_selector = \"results\"\nendpoint.paginator = {{ type = \"offset\", limit = 100, total_path = \"total_count\"{maximum} }}\n"
        )
    };
    let (_dir, capped) = project(&source(", maximum_offset = 10000"), &[]);
    let (_c, s) = ingest(capped, "points").await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.records, s.requests), (10_000, 100));
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(
        s.warnings[0].contains(
            "stopped at maximum_offset = 10000 although 12000 records are announced: 2000 records were not fetched"
        ),
        "{:?}",
        s.warnings
    );
    assert_eq!(log.hits().last().unwrap().query["offset"], "9900");
    // Without the cap, the API's refusal is the run's error, with its message.
    let (_dir2, uncapped) = project(&source(""), &[]);
    let (_c, s) = ingest(uncapped, "points").await;
    assert_eq!(s.records, 10_000);
    assert!(
        s.errors
            .iter()
            .any(|e| e.contains("HTTP 400") && e.contains("use the exports endpoint")),
        "{:?}",
        s.errors
    );
}

#[tokio::test]
async fn belib_cursor_pages() {
    let (addr, _log) = serve(captures::belib_cursor()).await;
    let (_dir, project) = project(
        &format!(
            "[sources.belib]\ntype = \"rest\"\nclient.base_url = \"http://{addr}/belib\"\nendpoint.data_selector = \"results\"\nendpoint.paginator = {{ type = \"cursor\" }}\n"
        ),
        &[],
    );
    let (_c, s) = ingest(project, "belib").await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.records, s.landed), (1937, 4));
}

#[tokio::test]
async fn football_data_json_link_pages() {
    let (addr, _log) = serve(captures::football_matches(None)).await;
    let (_dir, project) = project(
        &format!(
            r#"
[sources.matches]
type = "rest"
client.base_url = "http://{addr}/v4/"
client.headers = {{ "X-Auth-Token" = "${{FD_TOKEN}}" }}
endpoint.path = "teams/65/matches"
endpoint.data_selector = "matches"
endpoint.paginator = {{ type = "json_link" }}
"#
        ),
        &[("FD_TOKEN", "fd-token-xyz")],
    );
    let (_c, s) = ingest(project, "matches").await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.records, s.landed), (46, 5));
}

#[tokio::test]
async fn gbfs_header_link_pages() {
    let (addr, _log) = serve(captures::gbfs_information()).await;
    let (_dir, project) = project(
        &format!(
            "[sources.info]\ntype = \"rest\"\nclient.base_url = \"http://{addr}/gbfs/station_information.json\"\nendpoint.data_selector = \"data.stations\"\nendpoint.paginator = {{ type = \"header_link\" }}\n"
        ),
        &[],
    );
    let (c, s) = ingest(project, "info").await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!((s.records, s.landed), (1495, 4));
    let entries = c.landing().list("info").unwrap();
    assert!(entries[0].meta.headers["link"].contains("rel=\"next\""));
}

#[tokio::test]
async fn single_pages_open_meteo_object_and_gbfs_status_and_unchanged_rerun() {
    let om =
        fixture("weather/open-meteo_v1_forecast_multimodel_hourly168_2025-11-24_TheLuck1987.json");
    let status = fixture("velib-gbfs/station_status_2025-10-18_dariusbengo.json");
    let (addr, log) = serve(Arc::new(move |hit: &Hit| {
        if hit.path == "/v1/forecast" {
            raw(200, &[("content-type", "application/json")], om.clone())
        } else if hit.headers.get("if-none-match").map(String::as_str) == Some("\"v1\"") {
            raw(304, &[("etag", "\"v1\"")], "")
        } else {
            raw(
                200,
                &[("etag", "\"v1\""), ("content-type", "application/json")],
                status.clone(),
            )
        }
    }))
    .await;
    let toml = format!(
        r#"
[sources.weather]
type = "rest"
client.base_url = "http://{addr}/v1/forecast"
endpoint.params = {{ latitude = 48.85, longitude = 2.35, hourly = "temperature_2m" }}

[sources.status]
type = "rest"
client.base_url = "http://{addr}/gbfs/station_status.json"
endpoint.data_selector = "data.stations"
"#
    );
    let (dir, project) = project(&toml, &[]);
    let (_c, s) = ingest(project, "weather").await;
    assert_eq!((s.records, s.landed), (1, 1), "{:?}", s.errors);
    let (_c, s) = ingest(reload(&dir, &[]), "status").await;
    assert_eq!((s.records, s.landed), (1495, 1), "{:?}", s.errors);

    // Re-runs: the ETag answers 304, the content hash catches the identical forecast.
    let (_c, s) = ingest(reload(&dir, &[]), "status").await;
    assert_eq!((s.landed, s.unchanged), (0, 1), "{:?}", s.errors);
    assert_eq!(
        log.hits()
            .last()
            .unwrap()
            .headers
            .get("if-none-match")
            .map(String::as_str),
        Some("\"v1\"")
    );
    let (c, s) = ingest(reload(&dir, &[]), "weather").await;
    assert_eq!((s.landed, s.unchanged), (0, 1), "{:?}", s.errors);
    assert_eq!(c.landing().list("weather").unwrap().len(), 1);
    assert_eq!(c.landing().list("status").unwrap().len(), 1);
}

#[tokio::test]
async fn spotify_oauth_token_cached_and_resolve_fan_out() {
    let artists = fixture_json("spotify/v1_artists_ids_2artists_2026-02_vedantr98.json");
    let (addr, log) = serve(Arc::new(move |hit: &Hit| {
        use base64::Engine;
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("client-1:spotify-secret-42"));
        match hit.path.as_str() {
            "/api/token" if hit.headers.get("authorization") == Some(&basic) && hit.body.contains("grant_type=client_credentials") => {
                json(200, &json!({"access_token": "tok-abcdef-123", "token_type": "Bearer", "expires_in": 3600}))
            }
            "/api/token" => json(400, &json!({"error": "invalid_client"})),
            _ if hit.headers.get("authorization").map(String::as_str) != Some("Bearer tok-abcdef-123") => {
                json(401, &json!({"error": {"status": 401, "message": "Invalid access token"}}))
            }
            "/v1/artists" => json(200, &artists),
            path => {
                let id = path.rsplit('/').next().unwrap();
                let one = artists["artists"].as_array().unwrap().iter().find(|a| a["id"] == id).cloned();
                match one {
                    Some(a) => json(200, &a),
                    None => json(404, &json!({"error": {"status": 404, "message": "non existing id"}})),
                }
            }
        }
    }))
    .await;
    let toml = format!(
        r#"
[sources.artists]
type = "rest"
client.base_url = "http://{addr}/v1/"
client.auth = {{ type = "oauth2_client_credentials", access_token_url = "http://{addr}/api/token", client_id = "${{SPOTIFY_CLIENT_ID}}", client_secret = "${{SPOTIFY_CLIENT_SECRET}}" }}
endpoint.path = "artists"
endpoint.params = {{ ids = "0eDvMgVFoNV3TpwtrVCoTj,2YZyLoL8N0Wb9xBt1NhZWg" }}
endpoint.data_selector = "artists"

[sources.artist_detail]
type = "rest"
client.base_url = "http://{addr}/v1/"
client.auth = {{ type = "oauth2_client_credentials", access_token_url = "http://{addr}/api/token", client_id = "${{SPOTIFY_CLIENT_ID}}", client_secret = "${{SPOTIFY_CLIENT_SECRET}}" }}
endpoint.path = "artists/{{artist_id}}"
endpoint.params = {{ artist_id = {{ type = "resolve", resource = "artists", field = "id" }} }}
"#
    );
    let env = [
        ("SPOTIFY_CLIENT_ID", "client-1"),
        ("SPOTIFY_CLIENT_SECRET", "spotify-secret-42"),
    ];
    let (_dir, project) = project(&toml, &env);
    let (c, s) = ingest(project, "artist_detail").await;
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.records, 2);
    assert_eq!(c.landing().list("artists").unwrap().len(), 1);
    let details = c.landing().list("artist_detail").unwrap();
    assert_eq!(details.len(), 2);
    let mut ids: Vec<&str> = details
        .iter()
        .map(|e| e.meta.vars["artist_id"].as_str())
        .collect();
    ids.sort();
    assert_eq!(ids, ["2YZyLoL8N0Wb9xBt1NhZWg", "6l3HvQ5sa6mXTsMTB19rO5"]);
    assert_eq!(
        log.count("/api/token"),
        2,
        "one token per source run, reused across its requests"
    );
    // The token never reaches landing.
    for e in details {
        let body = c.landing().read_body(&e.meta).unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("tok-abcdef-123"));
    }
}

#[tokio::test]
async fn a_watch_list_csv_resolves_in_batches_every_run_even_unchanged() {
    // Spotify's `GET /v1/artists?ids=` takes 50 ids: 120 ids of a CSV watch list are 3
    // requests, and an unchanged watch list still gives its ids the next day.
    let (addr, log) = serve(Arc::new(|hit: &Hit| {
        let ids = hit.query.get("ids").cloned().unwrap_or_default();
        let artists: Vec<serde_json::Value> = ids
            .split(',')
            .map(|id| json!({"id": id, "followers": {"total": 1}}))
            .collect();
        json(200, &json!({ "artists": artists }))
    }))
    .await;
    let lists = tempfile::tempdir().unwrap();
    let watch = lists.path().join("watch.csv");
    let mut csv = String::from("spotify_id,name\n");
    for i in 0..120 {
        csv.push_str(&format!("id{i:03},Artist {i}\n"));
    }
    std::fs::write(&watch, csv).unwrap();
    let toml = format!(
        r#"
[sources.watch]
type = "csv"
path = "{}"

[sources.artists]
type = "rest"
change_detection = false
client.base_url = "http://{addr}/v1/"
endpoint.path = "artists"
endpoint.params = {{ ids = {{ type = "resolve", resource = "watch", field = "spotify_id", batch = 50 }} }}
endpoint.data_selector = "artists"
"#,
        watch.display()
    );
    let (dir, project) = project(&toml, &[]);
    for run in 0..2 {
        let (_c, s) = ingest(reload(&dir, &[]), "artists").await;
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        assert_eq!((s.requests, s.records), (3, 120), "run {run}");
    }
    drop(project);
    let mut batches: Vec<usize> = log
        .hits()
        .iter()
        .map(|h| h.query["ids"].split(',').count())
        .collect();
    batches.sort();
    assert_eq!(batches, [20, 20, 50, 50, 50, 50]);
    let first: Vec<String> = log.hits().iter().map(|h| h.query["ids"].clone()).collect();
    assert!(
        first
            .iter()
            .any(|ids| ids.starts_with("id000,id001,") && ids.ends_with(",id049"))
    );

    // A batch of 0 is refused where it is written.
    let bad = toml.replace("batch = 50", "batch = 0");
    std::fs::write(dir.path().join("affluent.toml"), bad).unwrap();
    let err = affluent_config::load_with_env(
        dir.path(),
        &affluent_config::Environment::from_map(Default::default()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`batch` must be at least 1"), "{err}");
}

#[tokio::test]
async fn time_grid_fan_out_multiplies_with_values_and_follows_dst() {
    let (addr, log) = serve(Arc::new(|hit: &Hit| {
        json(200, &json!([{"date_time": hit.query["date_time"], "counter_id": hit.query["counter_id"], "visitor_count": 3}]))
    }))
    .await;
    let (_dir, project) = project(
        &format!(
            r#"
timezone = "Europe/Paris"
[sources.footfall]
type = "rest"
concurrency = 8
client.base_url = "http://{addr}/events"
endpoint.params = {{ agency = "{{agency}}", counter_id = "{{counter_id}}", date_time = "{{hour:%Y-%m-%d_%H}}", until = "{{hour.end:%H}}" }}
fan_out.values = {{ agency = ["Lyon_1", "Lyon_2"], counter_id = [0, 1] }}
fan_out.time = {{ every = "1h", name = "hour" }}
"#
        ),
        &[],
    );
    let c = Connectors::new(project).unwrap();
    // 2024-03-31 in Paris has 23 hours.
    let day = interval("2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z");
    let s = c
        .ingest(
            "footfall",
            &IngestOptions {
                interval: Some(day),
                observer: None,
                recorder: None,
            },
        )
        .await
        .unwrap();
    assert!(s.errors.is_empty(), "{:?}", s.errors);
    assert_eq!(s.requests, 2 * 2 * 23);
    assert_eq!(s.records, 92);
    let hours: std::collections::BTreeSet<String> = log
        .hits()
        .iter()
        .map(|h| h.query["date_time"].clone())
        .collect();
    assert_eq!(hours.len(), 23);
    assert!(
        hours.contains("2024-03-31_01")
            && !hours.contains("2024-03-31_02")
            && hours.contains("2024-03-31_03")
    );
}

#[tokio::test]
async fn post_with_json_body_template() {
    let (addr, log) = serve(Arc::new(|_hit: &Hit| {
        json(200, &json!({"data": [{"a": 1}, {"a": 2}]}))
    }))
    .await;
    let (_dir, project) = project(
        &format!(
            r#"
[sources.search]
type = "rest"
client.base_url = "http://{addr}/search"
endpoint.method = "POST"
endpoint.json = {{ query = {{ from = "{{interval.start:date}}", to = "{{interval.end:date}}" }}, size = 100 }}
endpoint.data_selector = "data"
"#
        ),
        &[],
    );
    let (_c, s) = ingest(project, "search").await;
    assert_eq!(s.records, 2, "{:?}", s.errors);
    let body: Value = serde_json::from_str(&log.hits()[0].body).unwrap();
    assert_eq!(
        body,
        json!({"query": {"from": "2000-01-01", "to": "2021-01-01"}, "size": 100})
    );
}

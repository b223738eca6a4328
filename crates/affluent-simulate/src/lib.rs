//! Simulators of the seeds' APIs: real HTTP servers on 127.0.0.1 that answer like the seed's
//! service, deterministically for a seed, with optional faults (429, 500, slow answers) and
//! outages (the port closed). Used by `affluent simulate`, the demo, tests and benchmarks.
//!
//! - [`Server::footfall`]: seed 004's visitor counters ([`footfall`]);
//! - [`Server::belib`]: seed 001's Belib' charging points on Opendatasoft ([`belib`]) and the
//!   Paris weather on Open-Meteo and infoclimat.fr ([`weather`]), one clock for both;
//! - [`Server::velib`]: seed 003's Vélib' stations in real time, on Opendatasoft and as GBFS
//!   feeds ([`velib`]);
//! - [`Server::music`]: seed 002's artists on the Spotify Web API (client-credentials token,
//!   `/v1/artists`) and Deezer (`/artist/{id}`), day by day ([`music`]).
//!
//! Snapshot APIs answer as of the server's [`Clock`]: the wall clock, a fixed time, or an
//! accelerated clock, so a demo or a test can build days of history in seconds.

pub mod belib;
mod draw;
pub mod footfall;
pub mod music;
pub mod velib;
pub mod weather;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use belib::Belib;
pub use footfall::Footfall;
pub use music::Music;
pub use velib::Velib;
pub use weather::Weather;

/// How the simulator behaves besides answering.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The seed of every random draw.
    pub seed: u64,
    /// Share of requests answered with a fault: in turn 429 (Retry-After: 1), 500, and a slow
    /// (but correct) answer.
    pub faults: f64,
    /// How long a slow answer takes.
    pub slow: Duration,
    /// Windows of wall-clock time during which the port is closed.
    pub outages: Vec<(Timestamp, Timestamp)>,
    /// The time snapshot APIs answer for (default: the wall clock).
    pub clock: Clock,
    /// For the Belib' simulator: how many charging points (0: the real 1,937).
    pub points: usize,
    /// For the music simulator: enforce the services' own limits (Spotify's 429 with
    /// Retry-After beyond 20 requests a second, Deezer's quota error beyond 50 per 5 s); off
    /// for a demo that replays 60 days at once.
    pub limits: bool,
}

/// The time a simulator's snapshot APIs answer for.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum Clock {
    /// Now.
    #[default]
    Wall,
    /// Always this time (until changed with [`Server::set_time`]).
    Fixed(Timestamp),
    /// From `from`, `speed` simulated seconds per real second.
    Accelerated {
        /// The simulated time at start.
        from: Timestamp,
        /// Simulated seconds per real second.
        speed: f64,
    },
}

#[derive(Debug)]
struct Control {
    addr: SocketAddr,
    down: AtomicBool,
    requests: AtomicU64,
    faults: AtomicU64,
    clock: Mutex<(Clock, Instant)>,
}

impl Control {
    fn now(&self) -> Timestamp {
        let (clock, since) = *self.clock.lock().unwrap_or_else(|e| e.into_inner());
        match clock {
            Clock::Wall => Timestamp::now(),
            Clock::Fixed(t) => t,
            Clock::Accelerated { from, speed } => {
                // Saturates: a clock run past the end of time stays there.
                let elapsed = since.elapsed().as_secs_f64() * speed;
                let span = jiff::SignedDuration::try_from_secs_f64(elapsed)
                    .unwrap_or(jiff::SignedDuration::MAX);
                from.checked_add(span).unwrap_or(Timestamp::MAX)
            }
        }
    }
}

#[derive(Clone)]
enum Model {
    Footfall(Arc<Footfall>),
    Belib(Arc<Belib>),
    Velib(Arc<Velib>),
    Music(Arc<music::MusicApi>),
}

#[derive(Clone)]
struct App {
    model: Model,
    options: Arc<Options>,
    control: Arc<Control>,
}

/// A running simulator.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    control: Arc<Control>,
    stop: watch::Sender<bool>,
}

impl Server {
    /// Starts the footfall API on `127.0.0.1:port` (0: any free port).
    pub async fn footfall(port: u16, options: Options) -> std::io::Result<Self> {
        let model = Model::Footfall(Arc::new(Footfall::new(options.seed)));
        Self::start(port, model, options).await
    }

    /// Starts the Belib' and weather APIs on `127.0.0.1:port` (0: any free port):
    /// Opendatasoft's `/api/explore/v2.1/catalog/datasets/{dataset}/records` and
    /// `/exports/json`, Open-Meteo's `/v1/forecast`, infoclimat's `/public-api/gfs/json`.
    pub async fn belib(port: u16, options: Options) -> std::io::Result<Self> {
        let model = Model::Belib(Arc::new(Belib::with_points(options.seed, options.points)));
        Self::start(port, model, options).await
    }

    /// Starts the Vélib' APIs on `127.0.0.1:port` (0: any free port): Opendatasoft's
    /// `/api/explore/v2.1/catalog/datasets/velib-disponibilite-en-temps-reel/records` and
    /// `/exports/json`, and the GBFS feeds under `/opendata/Velib_Metropole/`.
    pub async fn velib(port: u16, options: Options) -> std::io::Result<Self> {
        let model = Model::Velib(Arc::new(Velib::new(options.seed)));
        Self::start(port, model, options).await
    }

    /// Starts the music APIs on `127.0.0.1:port` (0: any free port): Spotify's `POST
    /// /api/token`, `GET /v1/artists?ids=` and `GET /v1/artists/{id}`, Deezer's `GET
    /// /artist/{id}`, over [`music::ARTISTS`] artists; `GET /watchlist.csv` is their ids.
    pub async fn music(port: u16, options: Options) -> std::io::Result<Self> {
        let model = Model::Music(Arc::new(music::MusicApi::new(Music::new(options.seed))));
        Self::start(port, model, options).await
    }

    async fn start(port: u16, model: Model, options: Options) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let control = Arc::new(Control {
            addr,
            down: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            clock: Mutex::new((options.clock, Instant::now())),
        });
        let app = App {
            model,
            options: Arc::new(options),
            control: control.clone(),
        };
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(supervise(listener, addr, app, stopped));
        Ok(Self {
            addr,
            control,
            stop,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes (or reopens) the port: an outage.
    pub fn set_down(&self, down: bool) {
        self.control.down.store(down, Ordering::SeqCst);
    }

    /// Requests answered so far (faults included).
    pub fn requests(&self) -> u64 {
        self.control.requests.load(Ordering::Relaxed)
    }

    /// Faults injected so far.
    pub fn faults(&self) -> u64 {
        self.control.faults.load(Ordering::Relaxed)
    }

    /// Sets the clock snapshot APIs answer for.
    pub fn set_clock(&self, clock: Clock) {
        *self.control.clock.lock().unwrap_or_else(|e| e.into_inner()) = (clock, Instant::now());
    }

    /// Answers as of `t` from now on (a fixed clock).
    pub fn set_time(&self, t: Timestamp) {
        self.set_clock(Clock::Fixed(t));
    }

    /// The time snapshot APIs answer for now.
    pub fn now(&self) -> Timestamp {
        self.control.now()
    }

    /// Stops the server.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_down(app: &App) -> bool {
    if app.control.down.load(Ordering::SeqCst) {
        return true;
    }
    let now = Timestamp::now();
    app.options
        .outages
        .iter()
        .any(|(from, to)| *from <= now && now < *to)
}

/// Serves while up; while down the port is closed (connections are refused).
async fn supervise(
    first: TcpListener,
    addr: SocketAddr,
    app: App,
    mut stopped: watch::Receiver<bool>,
) {
    let mut listener = Some(first);
    loop {
        if *stopped.borrow() {
            return;
        }
        if is_down(&app) {
            listener = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("simulator cannot reopen {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let router = match app.model {
            Model::Footfall(_) => axum::Router::new()
                .route("/get_visitor_count", get(visitor_count))
                .route("/", get(index)),
            Model::Belib(_) => axum::Router::new()
                .route(
                    "/api/explore/v2.1/catalog/datasets/{dataset}/records",
                    get(ods_records),
                )
                .route(
                    "/api/explore/v2.1/catalog/datasets/{dataset}/exports/json",
                    get(ods_export),
                )
                .route("/v1/forecast", get(open_meteo))
                .route("/public-api/gfs/json", get(infoclimat))
                .route("/", get(belib_index)),
            Model::Velib(_) => axum::Router::new()
                .route(
                    "/api/explore/v2.1/catalog/datasets/{dataset}/records",
                    get(velib_records),
                )
                .route(
                    "/api/explore/v2.1/catalog/datasets/{dataset}/exports/json",
                    get(velib_export),
                )
                .route("/opendata/Velib_Metropole/{feed}", get(velib_gbfs))
                .route("/", get(velib_index)),
            Model::Music(_) => axum::Router::new()
                .route("/api/token", axum::routing::post(music_token))
                .route("/v1/artists", get(spotify_artists))
                .route("/v1/artists/{id}", get(spotify_artist))
                .route("/artist/{id}", get(deezer_artist))
                .route("/watchlist.csv", get(music_watchlist))
                .route("/", get(music_index)),
        }
        .with_state(app.clone());
        let watch_app = app.clone();
        let mut stop = stopped.clone();
        let until_down = async move {
            loop {
                if is_down(&watch_app) || *stop.borrow() {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stop.changed() => {}
                }
            }
        };
        if let Err(e) = axum::serve(l, router)
            .with_graceful_shutdown(until_down)
            .await
        {
            tracing::warn!("simulator: {e}");
        }
        if stopped.has_changed().unwrap_or(true) && *stopped.borrow_and_update() {
            return;
        }
    }
}

async fn index() -> impl IntoResponse {
    Json(serde_json::json!({
        "service": "affluent footfall simulator (seed 004's visitor counter API)",
        "endpoint": "/get_visitor_count?date_time=YYYY-MM-DD HH:MM&agency_name=NAME&counter_id=N&count_unit=visitors",
        "agencies": footfall::agencies().iter().map(|a| serde_json::json!({"agency_name": a.name, "counters": a.counters})).collect::<Vec<_>>(),
    }))
}

fn detail(status: StatusCode, text: String) -> Response {
    (status, Json(serde_json::json!({ "detail": text }))).into_response()
}

/// Counts the request and, for the share of requests asked, answers with a fault instead (or
/// after a delay).
async fn fault(app: &App) -> Option<Response> {
    let n = app.control.requests.fetch_add(1, Ordering::Relaxed);
    if app.options.faults > 0.0 {
        let draw = {
            let mut x = n ^ app.options.seed.rotate_left(17) ^ 0x1234_5678_9abc_def0;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((x ^ (x >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        };
        if draw < app.options.faults {
            let k = app.control.faults.fetch_add(1, Ordering::Relaxed);
            match k % 3 {
                0 => {
                    let mut r = detail(StatusCode::TOO_MANY_REQUESTS, "slow down".into());
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    return Some(r);
                }
                1 => {
                    return Some(detail(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal error".into(),
                    ));
                }
                _ => tokio::time::sleep(app.options.slow).await,
            }
        }
    }
    None
}

async fn visitor_count(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(fault) = fault(&app).await {
        return fault;
    }
    let Model::Footfall(model) = &app.model else {
        return detail(StatusCode::NOT_FOUND, "not this simulator".into());
    };
    let Some(date_time) = params.get("date_time") else {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "query parameter date_time is required".into(),
        );
    };
    let Some(agency) = params.get("agency_name") else {
        return detail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "query parameter agency_name is required".into(),
        );
    };
    let counter = match params.get("counter_id").map(|c| c.trim().parse::<i64>()) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => {
            return detail(
                StatusCode::UNPROCESSABLE_ENTITY,
                "counter_id must be an integer".into(),
            );
        }
    };
    match model.answer(
        date_time,
        agency,
        counter,
        params.get("count_unit").map(String::as_str),
    ) {
        Ok(reading) => Json(reading).into_response(),
        Err(refusal) => detail(StatusCode::NOT_FOUND, refusal.to_string()),
    }
}

async fn belib_index() -> impl IntoResponse {
    Json(serde_json::json!({
        "service": "affluent Belib' and weather simulator (seed 001)",
        "endpoints": [
            format!("/api/explore/v2.1/catalog/datasets/{}/records?limit=100&offset=0", belib::REALTIME),
            format!("/api/explore/v2.1/catalog/datasets/{}/exports/json", belib::REALTIME),
            format!("/api/explore/v2.1/catalog/datasets/{}/records?limit=100&offset=0", belib::STATIC),
            format!("/api/explore/v2.1/catalog/datasets/{}/exports/json", belib::STATIC),
            "/v1/forecast?latitude=48.8566&longitude=2.3522&hourly=temperature_2m,rain&temporal_resolution=hourly_3".to_string(),
            "/public-api/gfs/json?_ll=48.85341,2.3488&_auth=KEY&_c=CHECK".to_string(),
        ],
    }))
}

/// A JSON answer with a status (an API's refusal).
fn json_status(status: u16, body: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(body),
    )
        .into_response()
}

/// A JSON answer of a snapshot model, or its refusal (status, body).
type Answer = Result<serde_json::Value, (u16, serde_json::Value)>;

/// Counts the request, injects its fault if it draws one, else answers from the server's
/// model (`pick` finds it: another simulator's routes answer 404) as of the server's clock.
/// The answer is computed on a blocking thread: a whole export takes a while.
async fn snapshot_answer<M: Send + Sync + 'static>(
    app: &App,
    pick: fn(&Model) -> Option<&Arc<M>>,
    answer: impl FnOnce(&M, Timestamp) -> Answer + Send + 'static,
) -> Response {
    if let Some(fault) = fault(app).await {
        return fault;
    }
    let Some(model) = pick(&app.model) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (model, now) = (model.clone(), app.control.now());
    match tokio::task::spawn_blocking(move || answer(&model, now)).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err((status, body))) => json_status(status, body),
        Err(e) => detail(StatusCode::INTERNAL_SERVER_ERROR, format!("simulator: {e}")),
    }
}

/// [`snapshot_answer`] from the Belib' model.
async fn belib_answer(
    app: &App,
    answer: impl FnOnce(&Belib, Timestamp) -> Answer + Send + 'static,
) -> Response {
    fn pick(m: &Model) -> Option<&Arc<Belib>> {
        match m {
            Model::Belib(b) => Some(b),
            _ => None,
        }
    }
    snapshot_answer(app, pick, answer).await
}

fn ods(
    result: Result<serde_json::Value, belib::OdsError>,
) -> Result<serde_json::Value, (u16, serde_json::Value)> {
    result.map_err(|e| (e.status, e.body))
}

async fn ods_records(
    State(app): State<App>,
    Path(dataset): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    belib_answer(&app, move |b, now| ods(b.records(&dataset, &params, now))).await
}

async fn ods_export(
    State(app): State<App>,
    Path(dataset): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    belib_answer(&app, move |b, now| ods(b.export(&dataset, &params, now))).await
}

async fn open_meteo(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    belib_answer(&app, move |b, now| {
        b.weather()
            .open_meteo(&params, now)
            .map_err(|reason| (400, serde_json::json!({ "error": true, "reason": reason })))
    })
    .await
}

async fn infoclimat(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    belib_answer(&app, move |b, now| {
        b.weather()
            .infoclimat(&params, now)
            .map_err(|(state, message)| {
                (
                    state,
                    serde_json::json!({ "request_state": state, "message": message }),
                )
            })
    })
    .await
}

fn music_api(app: &App) -> Option<Arc<music::MusicApi>> {
    match &app.model {
        Model::Music(m) => Some(m.clone()),
        _ => None,
    }
}

fn header_text(headers: &axum::http::HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn music_token(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    body: String,
) -> Response {
    if let Some(fault) = fault(&app).await {
        return fault;
    }
    let Some(api) = music_api(&app) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match api.token(
        header_text(&headers, header::AUTHORIZATION).as_deref(),
        &body,
    ) {
        Ok(v) => Json(v).into_response(),
        Err((status, body)) => json_status(status, body),
    }
}

/// A Spotify refusal, with `Retry-After` on a 429.
fn spotify_refusal(status: u16, body: serde_json::Value) -> Response {
    let mut r = json_status(status, body);
    if status == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

async fn spotify_artists(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if let Some(fault) = fault(&app).await {
        return fault;
    }
    let Some(api) = music_api(&app) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let auth = header_text(&headers, header::AUTHORIZATION);
    if let Err((status, body)) = api.spotify_gate(auth.as_deref(), app.options.limits) {
        return spotify_refusal(status, body);
    }
    let ids = params.get("ids").cloned().unwrap_or_default();
    match api.music.spotify_artists(&ids, app.control.now()) {
        Ok(v) => Json(v).into_response(),
        Err((status, body)) => spotify_refusal(status, body),
    }
}

async fn spotify_artist(
    State(app): State<App>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(fault) = fault(&app).await {
        return fault;
    }
    let Some(api) = music_api(&app) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let auth = header_text(&headers, header::AUTHORIZATION);
    if let Err((status, body)) = api.spotify_gate(auth.as_deref(), app.options.limits) {
        return spotify_refusal(status, body);
    }
    match api.music.by_spotify(&id) {
        Some(a) => Json(api.music.spotify_artist(a, app.control.now())).into_response(),
        None => spotify_refusal(
            400,
            serde_json::json!({"error": {"status": 400, "message": "invalid id"}}),
        ),
    }
}

async fn deezer_artist(State(app): State<App>, Path(id): Path<String>) -> Response {
    if let Some(fault) = fault(&app).await {
        return fault;
    }
    let Some(api) = music_api(&app) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Deezer answers its errors with status 200.
    if let Err(body) = api.deezer_gate(app.options.limits) {
        return Json(body).into_response();
    }
    Json(api.music.deezer_artist(&id, app.control.now())).into_response()
}

async fn music_watchlist(State(app): State<App>) -> Response {
    let Some(api) = music_api(&app) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        api.music.watchlist_csv(),
    )
        .into_response()
}

async fn music_index() -> impl IntoResponse {
    Json(serde_json::json!({
        "service": "affluent music simulator (seed 002: Spotify Web API and Deezer)",
        "endpoints": [
            "POST /api/token (grant_type=client_credentials, Basic client_id:client_secret)",
            "GET /v1/artists?ids=ID,ID (at most 50; Authorization: Bearer TOKEN)",
            "GET /v1/artists/{id}",
            "GET /artist/{id} (Deezer)",
            "GET /watchlist.csv (the simulated artists' ids)",
        ],
    }))
}

async fn velib_index() -> impl IntoResponse {
    Json(serde_json::json!({
        "service": "affluent Vélib' simulator (seed 003)",
        "endpoints": [
            format!("/api/explore/v2.1/catalog/datasets/{}/records?limit=100&offset=0", velib::DATASET),
            format!("/api/explore/v2.1/catalog/datasets/{}/exports/json", velib::DATASET),
            format!("{}/gbfs.json", velib::GBFS_PATH),
            format!("{}/station_information.json", velib::GBFS_PATH),
            format!("{}/station_status.json", velib::GBFS_PATH),
        ],
    }))
}

/// [`snapshot_answer`] from the Vélib' model.
async fn velib_answer(
    app: &App,
    answer: impl FnOnce(&Velib, Timestamp) -> Answer + Send + 'static,
) -> Response {
    fn pick(m: &Model) -> Option<&Arc<Velib>> {
        match m {
            Model::Velib(v) => Some(v),
            _ => None,
        }
    }
    snapshot_answer(app, pick, answer).await
}

async fn velib_records(
    State(app): State<App>,
    Path(dataset): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    velib_answer(&app, move |v, now| ods(v.records(&dataset, &params, now))).await
}

async fn velib_export(
    State(app): State<App>,
    Path(dataset): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    velib_answer(&app, move |v, now| ods(v.export(&dataset, &params, now))).await
}

async fn velib_gbfs(State(app): State<App>, Path(feed): Path<String>) -> Response {
    let base = format!("http://{}", app.control.addr);
    velib_answer(&app, move |v, now| {
        feed.strip_suffix(".json")
            .and_then(|f| v.gbfs(f, now, &base))
            .ok_or_else(|| {
                (
                    404,
                    serde_json::json!({ "error": format!("no feed {feed}") }),
                )
            })
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_readings_refusals_faults_and_outages_over_http() {
        let server = Server::footfall(
            0,
            Options {
                seed: 1,
                faults: 0.0,
                ..Options::default()
            },
        )
        .await
        .expect("start");
        let http = reqwest::Client::new();
        let get = |q: &'static str| {
            let url = format!("{}/get_visitor_count?{q}", server.url());
            let http = http.clone();
            async move { http.get(url).send().await }
        };
        let r =
            get("date_time=2024-03-05%2010:00&agency_name=Lyon_1&counter_id=0&count_unit=visitors")
                .await
                .expect("answer");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["agency_name"], "Lyon_1");
        assert_eq!(v["date_time"], "2024-03-05 10:00");
        assert_eq!(v["unit"], "visitors");
        assert_eq!(v["counter_id"], 0);
        let r = get("date_time=2024-03-05%2010:00&agency_name=Nowhere&counter_id=0")
            .await
            .expect("answer");
        assert_eq!(r.status(), 404);
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["detail"], "unknown agency \"Nowhere\"");
        let r = get("date_time=yesterday&agency_name=Lyon_1")
            .await
            .expect("answer");
        assert_eq!(r.status(), 404);
        server.set_down(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            get("date_time=2024-03-05%2010:00&agency_name=Lyon_1")
                .await
                .is_err(),
            "port closed"
        );
        server.set_down(false);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let r = get("date_time=2024-03-05%2010:00&agency_name=Lyon_1")
            .await
            .expect("back up");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        assert!(v.get("counter_id").is_none(), "a total has no counter_id");
    }

    #[tokio::test]
    async fn a_share_of_requests_fails_as_asked() {
        let server = Server::footfall(
            0,
            Options {
                seed: 3,
                faults: 0.3,
                slow: Duration::from_millis(20),
                ..Options::default()
            },
        )
        .await
        .expect("start");
        let http = reqwest::Client::new();
        let mut statuses = HashMap::new();
        for _ in 0..300 {
            let r = http
                .get(format!(
                    "{}/get_visitor_count?date_time=2024-03-05%2010:00&agency_name=Lyon_1",
                    server.url()
                ))
                .send()
                .await
                .expect("answer");
            *statuses.entry(r.status().as_u16()).or_insert(0) += 1;
        }
        let faults = server.faults();
        assert!((60..=120).contains(&faults), "{faults} faults of 300");
        assert_eq!(statuses[&429] + statuses[&500] + statuses[&200], 300);
        assert!(statuses[&429] >= 20 && statuses[&500] >= 20, "{statuses:?}");
    }

    /// GET `path` of a simulator: the status and the JSON body.
    async fn get_json(server: &Server, path: String) -> (u16, serde_json::Value) {
        let r = reqwest::get(format!("{}{path}", server.url()))
            .await
            .expect("answer");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json"))
    }

    #[tokio::test]
    async fn belib_and_weather_answer_over_http_as_of_the_clock() {
        let t0: Timestamp = "2025-03-04T02:00:00Z".parse().expect("time");
        let server = Server::belib(
            0,
            Options {
                seed: 1,
                clock: Clock::Fixed(t0),
                ..Options::default()
            },
        )
        .await
        .expect("start");
        let get = |path: String| get_json(&server, path);
        let base = format!("/api/explore/v2.1/catalog/datasets/{}", belib::REALTIME);
        let (status, page) = get(format!("{base}/records?limit=100&offset=1900")).await;
        assert_eq!(status, 200);
        assert_eq!(page["total_count"], 1937);
        assert_eq!(page["results"].as_array().expect("results").len(), 37);
        let (_, night) = get(format!("{base}/exports/json")).await;
        assert_eq!(night.as_array().expect("array").len(), 1937);
        server.set_time(t0 + jiff::SignedDuration::from_hours(9));
        let (_, day) = get(format!("{base}/exports/json")).await;
        let changed = night
            .as_array()
            .expect("array")
            .iter()
            .zip(day.as_array().expect("array"))
            .filter(|(a, b)| a["statut_pdc"] != b["statut_pdc"])
            .count();
        assert!(changed > 300, "{changed} statuses changed in 9 hours");
        let (status, err) = get(format!("{base}/records?limit=100&offset=9950")).await;
        assert_eq!(status, 400);
        assert_eq!(err["error_code"], "InvalidRESTParameterError");
        let (status, forecast) = get(
            "/v1/forecast?latitude=48.8566&longitude=2.3522&hourly=temperature_2m,rain&temporal_resolution=hourly_3&past_days=2&timezone=Europe/Paris".into(),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            forecast["hourly"]["time"].as_array().expect("times").len(),
            9 * 8
        );
        let (status, err) =
            get("/v1/forecast?latitude=48.8&longitude=2.3&hourly=snow".into()).await;
        assert_eq!(
            (status, err["error"].clone()),
            (400, serde_json::json!(true))
        );
        let (status, ic) = get("/public-api/gfs/json?_ll=48.85,2.35&_auth=k&_c=c".into()).await;
        assert_eq!(
            (status, ic["request_state"].clone()),
            (200, serde_json::json!(200))
        );
        let (status, _) = get("/public-api/gfs/json?_ll=48.85,2.35".into()).await;
        assert_eq!(status, 401);
    }

    #[tokio::test]
    async fn velib_serves_opendatasoft_and_gbfs_as_of_the_clock() {
        let t0: Timestamp = "2025-03-04T08:00:00Z".parse().expect("time");
        let server = Server::velib(
            0,
            Options {
                seed: 1,
                clock: Clock::Fixed(t0),
                ..Options::default()
            },
        )
        .await
        .expect("start");
        let get = |path: String| get_json(&server, path);
        let (status, feeds) = get("/opendata/Velib_Metropole/gbfs.json".into()).await;
        assert_eq!(status, 200);
        let status_url = feeds["data"]["en"]["feeds"][3]["url"]
            .as_str()
            .expect("url");
        assert_eq!(
            status_url,
            format!(
                "{}/opendata/Velib_Metropole/station_status.json",
                server.url()
            )
        );
        let (_, info) = get("/opendata/Velib_Metropole/station_information.json".into()).await;
        assert_eq!(
            info["data"]["stations"].as_array().expect("stations").len(),
            1471
        );
        let (_, first) = get("/opendata/Velib_Metropole/station_status.json".into()).await;
        server.set_time(t0 + jiff::SignedDuration::from_mins(5));
        let (_, later) = get("/opendata/Velib_Metropole/station_status.json".into()).await;
        let moved = first["data"]["stations"]
            .as_array()
            .expect("stations")
            .iter()
            .zip(later["data"]["stations"].as_array().expect("stations"))
            .filter(|(a, b)| a["last_reported"] != b["last_reported"])
            .count();
        assert!(moved > 1300, "{moved} stations reported again in 5 minutes");
        let base = format!("/api/explore/v2.1/catalog/datasets/{}", velib::DATASET);
        let (status, page) = get(format!("{base}/records?limit=20&offset=0")).await;
        assert_eq!(
            (status, page["total_count"].clone()),
            (200, serde_json::json!(1471))
        );
        let (_, export) = get(format!("{base}/exports/json")).await;
        assert_eq!(export.as_array().expect("array").len(), 1471);
        let (status, _) = get("/opendata/Velib_Metropole/free_bike_status.json".into()).await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn music_answers_with_a_token_day_by_day_and_within_its_limits() {
        let t0: Timestamp = "2026-06-01T06:00:00Z".parse().expect("time");
        let server = Server::music(
            0,
            Options {
                seed: 2,
                clock: Clock::Fixed(t0),
                limits: true,
                ..Options::default()
            },
        )
        .await
        .expect("start");
        let client = reqwest::Client::new();
        let music = Music::new(2);
        let ids: Vec<String> = music
            .artists()
            .iter()
            .filter_map(|a| a.spotify_id.clone())
            .take(50)
            .collect();
        let artists = format!("{}/v1/artists?ids={}", server.url(), ids.join(","));
        // No token: 401, in Spotify's error shape.
        let r = client.get(&artists).send().await.expect("answer");
        assert_eq!(r.status().as_u16(), 401);
        // Client credentials give a token; a wrong grant does not.
        let r = client
            .post(format!("{}/api/token", server.url()))
            .basic_auth("id", Some("secret"))
            .body("grant_type=authorization_code")
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status().as_u16(), 400);
        let token: serde_json::Value = client
            .post(format!("{}/api/token", server.url()))
            .basic_auth("id", Some("secret"))
            .body("grant_type=client_credentials")
            .send()
            .await
            .expect("answer")
            .json()
            .await
            .expect("json");
        let bearer = token["access_token"].as_str().expect("token").to_string();
        let fetch = |url: String| {
            let (client, bearer) = (client.clone(), bearer.clone());
            async move {
                let r = client
                    .get(url)
                    .bearer_auth(bearer)
                    .send()
                    .await
                    .expect("answer");
                let status = r.status().as_u16();
                let retry = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap_or("").to_string());
                (
                    status,
                    retry,
                    r.json::<serde_json::Value>().await.expect("json"),
                )
            }
        };
        let (status, _, day1) = fetch(artists.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(day1["artists"].as_array().expect("artists").len(), 50);
        // The next day, the same artists have moved.
        server.set_time(t0 + jiff::SignedDuration::from_hours(24));
        let (_, _, day2) = fetch(artists.clone()).await;
        let moved = (0..50)
            .filter(|&i| {
                day1["artists"][i]["followers"]["total"] != day2["artists"][i]["followers"]["total"]
            })
            .count();
        assert!(moved > 40, "{moved} of 50 moved in a day");
        // Beyond 20 requests in a second: 429 with Retry-After.
        let mut refused = None;
        for _ in 0..40 {
            let (status, retry, body) = fetch(artists.clone()).await;
            if status == 429 {
                refused = Some((retry, body));
                break;
            }
        }
        let (retry, body) = refused.expect("a 429 within 40 quick requests");
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"]["status"], 429);
        // Deezer: an artist, then its quota error past 50 requests in 5 seconds.
        let deezer = music
            .artists()
            .iter()
            .find_map(|a| a.deezer_id)
            .expect("an artist on Deezer");
        let url = format!("{}/artist/{deezer}", server.url());
        let (status, _, one) = fetch(url.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(one["id"], deezer);
        assert!(one["nb_fan"].as_u64().expect("fans") > 0);
        // An unknown id: Deezer's error object, with status 200 as Deezer answers.
        let (status, _, missing) = fetch(format!("{}/artist/1", server.url())).await;
        assert_eq!(
            (status, &missing["error"]["code"]),
            (200, &serde_json::json!(800))
        );
        let mut quota = None;
        for _ in 0..60 {
            let (_, _, body) = fetch(url.clone()).await;
            if body["error"]["code"] == 4 {
                quota = Some(body);
                break;
            }
        }
        assert!(
            quota.is_some(),
            "Deezer's quota error within 60 quick requests"
        );
    }
}

//! Simulators of the seeds' APIs: real HTTP servers on 127.0.0.1 that answer like the seed's
//! service, deterministically for a seed, with optional faults (429, 500, slow answers) and
//! outages (the port closed). Used by `affluent simulate`, the demo, tests and benchmarks.

pub mod footfall;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use footfall::Footfall;

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
}

#[derive(Debug)]
struct Control {
    down: AtomicBool,
    requests: AtomicU64,
    faults: AtomicU64,
}

#[derive(Clone)]
struct App {
    model: Arc<Footfall>,
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
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let control = Arc::new(Control {
            down: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            faults: AtomicU64::new(0),
        });
        let app = App {
            model: Arc::new(Footfall::new(options.seed)),
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
        let router = axum::Router::new()
            .route("/get_visitor_count", get(visitor_count))
            .route("/", get(index))
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

async fn visitor_count(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
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
                    return r;
                }
                1 => return detail(StatusCode::INTERNAL_SERVER_ERROR, "internal error".into()),
                _ => tokio::time::sleep(app.options.slow).await,
            }
        }
    }
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
    match app.model.answer(
        date_time,
        agency,
        counter,
        params.get("count_unit").map(String::as_str),
    ) {
        Ok(reading) => Json(reading).into_response(),
        Err(refusal) => detail(StatusCode::NOT_FOUND, refusal.to_string()),
    }
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
}

//! The dashboard: pages declared in `affluent.toml` ([`affluent_config::schema::PageConfig`]),
//! served by axum from the same binary as the pipeline.
//!
//! - [`pages`]: filters resolved from the URL into bound parameters; panels run as read-only
//!   queries on a shared [`affluent_tables::Reader`].
//! - [`live`]: new table commits swap the reader and are pushed to open pages (SSE).
//! - [`auth`], [`sessions`], [`throttle`]: users (argon2id on a bounded pool of threads) and
//!   sessions (hashed ids) in the state store; CSRF tokens (axum_csrf) on every state-changing
//!   request; login throttling with exponential waits, counted atomically.
//! - [`api`]: the JSON API (OpenAPI at `/api/docs`) and the HTML shell; [`assets`]: the
//!   front-end (ECharts, Swagger UI and our own script), embedded at build time.
//! - [`alerts`]: the alerts panel (firings of `[alerts.*]`) and each user's "seen" state.
//! - [`pipeline`]: the pipeline's own page: tasks, coverage of their intervals, runs, rate
//!   limits and quotas, and backfills an admin starts (run here, with the scheduler's claims);
//!   [`logs`]: the process's last log lines, for that page.
//! - [`metrics`]: `/metrics` for Prometheus; `/healthz`.
//!
//! This crate knows no DataFusion: queries go through `affluent-tables`.

pub mod alerts;
pub mod api;
pub mod assets;
pub mod auth;
pub mod lineage;
pub mod lists;
pub mod live;
pub mod logs;
pub mod metrics;
pub mod pages;
pub mod pipeline;
pub mod sessions;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use affluent_config::Project;
use affluent_state::{Migration, Store};
use affluent_tables::Warehouse;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_csrf::CsrfConfig;

pub use auth::{Role, Users};
pub use live::Live;

/// A cause kept with an error (for logs), whatever its type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the dashboard, each with its HTTP status. Client errors (4xx) carry a message
/// written for the user; server errors carry their cause, which is logged with the request's
/// id and never sent: the response says what failed and gives the id (see [`WebError::public`]).
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// Bad input from the request.
    #[error("{0}")]
    Invalid(String),
    /// Not logged in.
    #[error("{0}")]
    Unauthorized(String),
    /// Logged in, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No such page, panel, user...
    #[error("{0}")]
    NotFound(String),
    /// Already exists.
    #[error("{0}")]
    Conflict(String),
    /// Too many failed logins.
    #[error("too many failed logins: try again in {} s", seconds_up(.0))]
    Throttled(Duration),
    /// The server sheds load (too many password checks at once): try again shortly.
    #[error("{0}: try again in a second")]
    Busy(String),
    /// A panel's or filter's query failed (the project's SQL, or the tables behind it).
    #[error("{what} failed")]
    Query {
        /// What was being computed: `panel \`daily\``, `filter \`agency\``.
        what: String,
        /// Why.
        #[source]
        source: affluent_tables::TableError,
    },
    /// The state store (users, sessions, favourites) failed.
    #[error("state store")]
    Store(#[source] BoxError),
    /// Something the server should always manage (a cookie key, a password hash, a socket).
    #[error("{what}")]
    Internal {
        /// What failed.
        what: String,
        /// Why.
        #[source]
        source: Option<BoxError>,
    },
}

impl WebError {
    /// The HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::Invalid(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            // A bound of `[query]` (time, memory, rows): the view asks too much; narrower
            // filters may do.
            WebError::Query { source, .. } if source.is_limit() => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::Query { .. } | WebError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            WebError::Store(_) | WebError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A state store failure.
    pub fn store(e: impl Into<BoxError>) -> Self {
        WebError::Store(e.into())
    }

    /// A query failure, `what` naming the panel or filter.
    pub fn query(what: impl Into<String>) -> impl FnOnce(affluent_tables::TableError) -> Self {
        let what = what.into();
        move |source| WebError::Query { what, source }
    }

    /// An internal failure with its cause.
    pub fn internal(what: impl Into<String>, e: impl Into<BoxError>) -> Self {
        WebError::Internal {
            what: what.into(),
            source: Some(e.into()),
        }
    }

    /// The message a user may see: the error itself for client errors; for server errors what
    /// failed and where the detail is, never the cause.
    pub fn public(&self, request_id: &str) -> String {
        match self {
            WebError::Query { what, source } if source.is_limit() => {
                format!("{what} stopped: {source} (a narrower period or filter may do)")
            }
            WebError::Query { what, .. } => format!(
                "{what} could not be computed; the server's log has the details (request {request_id})"
            ),
            WebError::Store(_) => format!(
                "the state store is not answering; try again shortly (request {request_id})"
            ),
            WebError::Internal { .. } => {
                format!("internal error; the server's log has the details (request {request_id})")
            }
            other => other.to_string(),
        }
    }
}

/// At most `max` characters of a client's text, with `…` when cut (for logs and messages: a
/// request may send any amount).
pub fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Whole seconds, rounded up (a wait of 0.2 s is "1 s", never "0 s").
fn seconds_up(d: &Duration) -> u64 {
    d.as_millis().div_ceil(1000) as u64
}

impl From<sqlx::Error> for WebError {
    fn from(e: sqlx::Error) -> Self {
        WebError::store(e)
    }
}

impl From<affluent_state::StateError> for WebError {
    fn from(e: affluent_state::StateError) -> Self {
        WebError::store(e)
    }
}

/// The body of every error: `{"error": "...", "request_id": "..."}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
    /// The request's id, also in the `x-request-id` header and in the server's log.
    pub request_id: String,
}

tokio::task_local! {
    /// The id of the request being served (set by [`api::request_id`]).
    pub static REQUEST_ID: String;
}

/// The current request's id, or `-` outside a request.
pub fn request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| "-".to_string())
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = self.status();
        let request_id = request_id();
        if status.is_server_error() {
            tracing::error!(
                request_id = %request_id,
                status = status.as_u16(),
                "dashboard: {}",
                affluent_core::error_chain(&self)
            );
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.public(&request_id),
                request_id,
            }),
        )
            .into_response();
        let retry_after = match &self {
            WebError::Throttled(wait) => Some(seconds_up(wait)),
            WebError::Busy(_) => Some(1),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    /// The project.
    pub project: Arc<Project>,
    /// The current tables and their change feed.
    pub live: Live,
    /// The state store.
    pub store: Store,
    /// Users.
    pub users: Users,
    /// Login throttling.
    pub throttle: throttle::Throttle,
    /// How often an open event stream checks that its session is still valid.
    pub session_check: Duration,
    /// Favourites.
    pub favourites: sessions::Favourites,
    /// Each user's lists (`[dashboard.lists]`).
    pub lists: lists::Lists,
    /// The alert firings each user has seen.
    pub seen: alerts::Seen,
    /// The backfills started from the dashboard.
    pub backfills: pipeline::Backfills,
    /// CSRF cookies and tokens.
    pub csrf: CsrfConfig,
    /// Metrics.
    pub metrics: metrics::Metrics,
    /// The one-time setup token while no user exists, and when it was made.
    pub setup_token: Arc<std::sync::Mutex<Option<(String, std::time::Instant)>>>,
    /// The `Host` names answered (lowercase, without port); empty: any. [`serve`] sets the
    /// loopback names when listening on a loopback address and the project names none.
    pub allowed_hosts: Arc<Vec<String>>,
    /// How long a setup link works (default [`SETUP_TTL`]).
    pub setup_ttl: Duration,
    /// Session cookies marked Secure.
    pub secure: bool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("project", &self.project.name)
            .finish_non_exhaustive()
    }
}

impl axum::extract::FromRef<AppState> for CsrfConfig {
    fn from_ref(state: &AppState) -> Self {
        state.csrf.clone()
    }
}

/// The dashboard's own tables in the state store: users, sessions, favourites, login failures,
/// server secrets, the alert firings each user has seen, and each user's lists.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("migrations/0001_dashboard.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("migrations/0002_hashed_sessions_and_throttle.sql"),
    },
    Migration {
        version: 3,
        sql: include_str!("migrations/0003_alerts_seen.sql"),
    },
    Migration {
        version: 4,
        sql: include_str!("migrations/0004_user_lists.sql"),
    },
];

/// Applies the dashboard's migrations to a state store; safe at every start.
pub async fn migrate(store: &Store) -> Result<(), WebError> {
    store
        .migrate("dashboard", MIGRATIONS)
        .await
        .map_err(WebError::from)
}

impl AppState {
    /// The state of a project's dashboard: applies its migrations, opens the reader and the
    /// cookie secrets.
    pub async fn new(warehouse: Warehouse, store: Store) -> Result<Self, WebError> {
        migrate(&store).await?;
        let project = Arc::new(warehouse.project().clone());
        let live = Live::open(warehouse).await?;
        let pool = store.pool().clone();
        let list_names = project.dashboard.lists.keys().cloned().collect();
        let secret = auth::secret(&pool, "csrf").await?;
        let secure = project.dashboard.secure_cookies.unwrap_or(false);
        let allowed_hosts = Arc::new(
            project
                .dashboard
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        );
        let salt: String = secret.iter().take(32).map(|b| format!("{b:02x}")).collect();
        let csrf = CsrfConfig::default()
            .with_cookie_name("affluent_csrf")
            .with_cookie_same_site(axum_csrf::SameSite::Strict)
            .with_http_only(true)
            .with_secure(secure)
            .with_salt(salt)
            .with_key(Some(axum_csrf::Key::from(&secret)));
        Ok(Self {
            project,
            live,
            users: Users::new(pool.clone()),
            throttle: throttle::Throttle::new(pool.clone()),
            session_check: Duration::from_secs(5),
            seen: alerts::Seen::new(pool.clone()),
            backfills: pipeline::Backfills::default(),
            lists: lists::Lists::new(pool.clone(), list_names),
            favourites: sessions::Favourites::new(pool),
            store,
            csrf,
            metrics: metrics::Metrics::new()
                .map_err(|e| WebError::internal("metrics registry", e))?,
            setup_token: Arc::new(std::sync::Mutex::new(None)),
            setup_ttl: SETUP_TTL,
            allowed_hosts,
            secure,
        })
    }

    /// When no user exists: a one-time token for `/setup?token=...`, the same one until used
    /// or [`AppState::setup_ttl`] old (then none until the server starts again).
    pub async fn setup_token(&self) -> Result<Option<String>, WebError> {
        if self.users.count().await? > 0 {
            return Ok(None);
        }
        let mut guard = self.setup_token.lock().unwrap_or_else(|p| p.into_inner());
        let (token, made) =
            guard.get_or_insert_with(|| (auth::random_hex(16), std::time::Instant::now()));
        Ok((made.elapsed() < self.setup_ttl).then(|| token.clone()))
    }

    /// How long an idle session lasts.
    pub fn session_ttl(&self) -> Duration {
        self.project
            .dashboard
            .session_ttl
            .map_or(Duration::from_secs(12 * 3600), |t| t.get())
    }
}

/// How long the setup link printed at start works.
pub const SETUP_TTL: Duration = Duration::from_secs(3600);

/// The address to listen on: the project's `[dashboard] listen`, else 127.0.0.1:8080.
pub fn listen_addr(project: &Project) -> SocketAddr {
    project
        .dashboard
        .listen
        .map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)), |l| l.0)
}

/// A running dashboard. Stop it with [`Server::shutdown`], which lets the table watcher finish
/// its current check (it may be opening tables) before the runtime goes away.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The one-time setup link, when no user exists.
    pub setup_url: Option<String>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    watcher: tokio::task::JoinHandle<()>,
    cleaner: tokio::task::JoinHandle<()>,
}

impl Server {
    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the server stops (it does not stop on its own).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        (&mut self.task).await.unwrap_or(Ok(()))
    }

    /// Stops accepting connections, lets requests in flight and the watcher's current check
    /// finish (open event streams get 3 seconds), then stops.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.cleaner.abort();
        let _ = (&mut self.watcher).await;
        if tokio::time::timeout(Duration::from_secs(3), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

/// Binds `addr` and serves the dashboard in the background; tables are checked for new
/// commits every second.
pub async fn serve(mut state: AppState, addr: SocketAddr) -> Result<Server, WebError> {
    if state.allowed_hosts.is_empty() && addr.ip().is_loopback() {
        state.allowed_hosts = Arc::new(
            ["localhost", "127.0.0.1", "[::1]"]
                .map(String::from)
                .to_vec(),
        );
    }
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        WebError::Invalid(format!(
            "cannot listen on {addr}: {e} (set [dashboard] listen or --listen to another address)"
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| WebError::internal("the listening socket's address", e))?;
    let setup_url = state
        .setup_token()
        .await?
        .map(|t| format!("http://{addr}/setup?token={t}"));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let watcher = state.live.watch(Duration::from_secs(1), stopped.clone());
    let sessions = sessions::SqlSessions::new(state.store.pool().clone());
    let cleaner = sessions.clone();
    let cleaner = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(e) = cleaner.delete_expired().await {
                tracing::debug!("dashboard: {e}");
            }
        }
    });
    let app = api::router(state, sessions);
    let mut until_stopped = stopped;
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = until_stopped.wait_for(|s| *s).await;
        })
        .await
    });
    Ok(Server {
        addr,
        setup_url,
        stop,
        task,
        watcher,
        cleaner,
    })
}

//! Routes: the JSON API (documented with OpenAPI), the HTML shell, assets, health and metrics.
//!
//! Every `/api` route but `session`, `login`, `setup` and `openapi.json` needs a logged-in
//! user, except the pages marked `public` (their filters and panels); `/api/users` needs an
//! admin. Every state-changing request (not GET/HEAD) needs the
//! CSRF token of `GET /api/session` in an `X-CSRF-Token` header.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use affluent_config::schema::{PageConfig, PanelConfig, PanelKind};
use affluent_core::TaskId;
use axum::Json;
use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{
    ConnectInfo, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{delete, get, post};
use axum_csrf::CsrfToken;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use utoipa::{OpenApi, ToSchema};

use crate::auth::{Role, UserInfo};
use crate::pages::{self, PanelData, ResolvedFilter, TableView};
use crate::sessions::{Favourite, SqlSessions};
use crate::{AppState, ErrorBody, WebError, assets};

/// The OpenAPI description of the JSON API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "affluent dashboard API",
        description = "Everything the dashboard's pages show, as JSON. Log in with POST /api/login (the session is a cookie); send the CSRF token of GET /api/session as X-CSRF-Token on every POST and DELETE (403 without it). Every error is `{\"error\", \"request_id\"}` (ErrorBody), the id also in the `x-request-id` header. A request for a Host the dashboard does not answer to (`[dashboard] allowed_hosts`) is refused with 400."
    ),
    paths(
        session_info,
        login,
        logout,
        setup,
        list_pages,
        page_filters,
        panel,
        panel_csv,
        list_favourites,
        add_favourite,
        remove_favourite,
        list_lists,
        add_to_list,
        remove_from_list,
        unseen_alerts,
        mark_alerts_seen,
        mark_all_alerts_seen,
        list_users,
        add_user,
        remove_user,
        events,
        crate::pipeline::list_tasks,
        crate::pipeline::coverage,
        crate::pipeline::runs,
        crate::pipeline::list_backfills,
        crate::pipeline::start_backfill,
        crate::pipeline::limits,
        crate::pipeline::logs,
        crate::lineage::panel_lineage,
        crate::lineage::raw_response,
        healthz
    ),
    components(schemas(
        ErrorBody,
        SessionInfo,
        LoginBody,
        SetupBody,
        PageSummary,
        PanelSummary,
        ResolvedFilter,
        pages::FilterOption,
        PanelData,
        pages::Comparison,
        Favourite,
        NewFavourite,
        ListSummary,
        ListItem,
        crate::alerts::FiringList,
        crate::alerts::FiringView,
        crate::alerts::UnseenCounts,
        crate::alerts::FiringKey,
        crate::alerts::MarkSeen,
        crate::alerts::MarkAllSeen,
        crate::alerts::Marked,
        UserInfo,
        NewUser,
        Role,
        crate::live::Change,
        ServerSentEvent,
        crate::pipeline::TaskView,
        crate::pipeline::CoverageView,
        crate::pipeline::SegmentView,
        crate::pipeline::SegmentState,
        crate::pipeline::RunView,
        crate::pipeline::NewBackfill,
        crate::pipeline::ReprocessMode,
        crate::pipeline::BackfillView,
        crate::pipeline::LimitView,
        crate::pipeline::LevelName,
        crate::pipeline::LogPage,
        crate::logs::LogRecord,
        crate::lineage::NodeView,
        crate::lineage::EntryView,
        crate::lineage::LineageView,
        crate::lineage::RawView
    ))
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The router of a dashboard.
pub fn router(state: AppState, sessions: SqlSessions) -> Router {
    let ttl = state.session_ttl().as_secs() as i64;
    let session_layer = SessionManagerLayer::new(sessions)
        .with_name("affluent_session")
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(state.secure)
        .with_expiry(Expiry::OnInactivity(
            tower_sessions::cookie::time::Duration::seconds(ttl),
        ));
    let router = Router::new()
        .route("/api/session", get(session_info))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/setup", post(setup))
        .route("/api/pages", get(list_pages))
        .route("/api/pages/{page}/filters", get(page_filters))
        .route("/api/pages/{page}/panels/{panel}", get(panel))
        .route("/api/pages/{page}/panels/{panel}/csv", get(panel_csv))
        .route(
            "/api/pages/{page}/panels/{panel}/geojson",
            get(panel_geojson),
        )
        .route("/api/favourites", get(list_favourites).post(add_favourite))
        .route("/api/favourites/{id}", delete(remove_favourite))
        .route("/api/lists", get(list_lists))
        .route("/api/lists/{list}/items", post(add_to_list))
        .route("/api/lists/{list}/items/{item}", delete(remove_from_list))
        .route("/api/alerts/unseen", get(unseen_alerts))
        .route("/api/alerts/seen", post(mark_alerts_seen))
        .route("/api/alerts/seen/all", post(mark_all_alerts_seen))
        .route("/api/users", get(list_users).post(add_user))
        .route("/api/users/{name}", delete(remove_user))
        .route("/api/events", get(events))
        .route("/api/pipeline/tasks", get(crate::pipeline::list_tasks))
        .route("/api/pipeline/coverage", get(crate::pipeline::coverage))
        .route("/api/pipeline/runs", get(crate::pipeline::runs))
        .route(
            "/api/pipeline/backfills",
            get(crate::pipeline::list_backfills).post(crate::pipeline::start_backfill),
        )
        .route("/api/pipeline/limits", get(crate::pipeline::limits))
        .route(
            "/api/pages/{page}/panels/{panel}/lineage",
            get(crate::lineage::panel_lineage),
        )
        .route(
            "/api/landing/{source}/{entry}",
            get(crate::lineage::raw_response),
        )
        .route("/api/pipeline/logs", get(crate::pipeline::logs))
        .route("/api/openapi.json", get(openapi))
        .route("/api/docs", get(docs))
        .route("/", get(home))
        .route("/login", get(shell_public))
        .route("/setup", get(shell_public))
        .route("/pages/{page}", get(shell_page))
        .route("/favourites", get(shell_private))
        .route("/admin", get(shell_private))
        .route("/pipeline", get(shell_private))
        .route("/assets/{file}", get(asset))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route_layer(from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), csrf_guard))
        .layer(session_layer)
        .layer(from_fn_with_state(state.clone(), host_guard))
        .layer(CompressionLayer::new())
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            content_security_policy(&state.project.dashboard.image_origins),
        ))
        .layer(axum::middleware::from_fn(request_id));
    // Behind TLS (`secure_cookies`), browsers are told to come back only over HTTPS.
    let router = if state.secure {
        router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
    } else {
        router
    };
    router.with_state(state)
}

/// The content security policy: the dashboard's own scripts and styles, images from itself and
/// from `[dashboard] image_origins` (checked by the config: scheme and host only).
fn content_security_policy(image_origins: &[String]) -> HeaderValue {
    let images: String = image_origins
        .iter()
        .filter(|o| {
            o.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:/-[]".contains(c))
        })
        .map(|o| format!(" {o}"))
        .collect();
    HeaderValue::from_str(&format!(
        "default-src 'self'; img-src 'self' data:{images}; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ))
    .unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        )
    })
}

/// Gives every request an id: the client's `x-request-id` when it is a short plain token, else
/// a new one. Errors log it, and the response carries it (header and error body), so a user's
/// report finds the server's log line.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_string)
        .unwrap_or_else(|| crate::auth::random_hex(8));
    // The API's answers are per user: no cache keeps them.
    let api = req.uri().path().starts_with("/api/");
    let mut response = crate::REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    if api && !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

// ---------------------------------------------------------------------------------------------
// Extractors whose rejections are API errors

/// An error answer outside [`WebError`]: an extractor's rejection, with the API's error body.
fn rejected(status: StatusCode, text: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            error: crate::shorten(text, 300),
            request_id: crate::request_id(),
        }),
    )
        .into_response()
}

/// `axum::Json`, whose rejections (415 without a JSON `Content-Type`, 400 not JSON, 422 JSON of
/// another shape, 413 too large) answer with the error body of every other error.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let text = match &rejection {
                    JsonRejection::MissingJsonContentType(_) => {
                        "send the body as JSON, with `Content-Type: application/json`".to_string()
                    }
                    JsonRejection::JsonSyntaxError(_) => {
                        format!("the body is not JSON: {}", rejection.body_text())
                    }
                    JsonRejection::JsonDataError(_) => {
                        format!(
                            "the body is not what this endpoint takes: {}",
                            rejection.body_text()
                        )
                    }
                    _ => rejection.body_text(),
                };
                Err(rejected(rejection.status(), &text))
            }
        }
    }
}

/// `axum::extract::Path`, whose rejection (a segment that is not UTF-8) is an API error.
#[derive(Debug)]
pub(crate) struct ApiPath<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|r: PathRejection| rejected(r.status(), &r.body_text()))
    }
}

/// `axum::extract::Query`, whose rejection (a query string that does not decode) is an API
/// error.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| ApiQuery(value))
            .map_err(|r: QueryRejection| rejected(r.status(), &r.body_text()))
    }
}

// ---------------------------------------------------------------------------------------------
// Who is asking

/// The logged-in user of a request; 401 otherwise.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    /// Login name.
    pub name: String,
    /// Role, read from the store on every request (a removed user is out at once).
    pub role: Role,
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| WebError::Unauthorized("log in first".to_string()))?;
        user_of(&session, state)
            .await?
            .ok_or_else(|| WebError::Unauthorized("log in first".to_string()))
    }
}

/// Whoever asks: the logged-in user, or nobody (a visitor of a public page).
#[derive(Debug, Clone)]
pub struct Visitor(pub Option<CurrentUser>);

impl FromRequestParts<AppState> for Visitor {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|_| WebError::Unauthorized("log in first".to_string()))?;
        Ok(Visitor(user_of(&session, state).await?))
    }
}

impl Visitor {
    /// The visitor may see a page: it is public, or they are logged in.
    pub(crate) fn may_see(&self, page: &PageConfig) -> Result<(), WebError> {
        if page.public || self.0.is_some() {
            Ok(())
        } else {
            Err(WebError::Unauthorized("log in first".to_string()))
        }
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.0.as_ref().map(|u| u.name.as_str())
    }
}

/// The logged-in admin of a request; 403 for a viewer.
#[derive(Debug, Clone)]
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if user.role != Role::Admin {
            return Err(WebError::Forbidden("only admins manage users".to_string()));
        }
        Ok(AdminUser(user))
    }
}

async fn user_of(session: &Session, state: &AppState) -> Result<Option<CurrentUser>, WebError> {
    let name: Option<String> = session.get("user").await.map_err(WebError::store)?;
    let Some(name) = name else { return Ok(None) };
    Ok(state
        .users
        .role(&name)
        .await?
        .map(|role| CurrentUser { name, role }))
}

/// The client's address: the peer's, or, when the peer is a trusted proxy (`[dashboard]
/// trusted_proxies`), the last address of `X-Forwarded-For` that is not a trusted proxy
/// itself (the ones before it are the client's to write, and not believed).
pub fn client_ip(
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    trusted: &[affluent_config::schema::IpNetwork],
) -> std::net::IpAddr {
    let peer = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let is_trusted = |ip: std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in forwarded.iter().rev() {
        let Ok(ip) = hop.parse::<std::net::IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

// ---------------------------------------------------------------------------------------------
// Middleware

/// Refuses state-changing requests without a valid CSRF token.
async fn csrf_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let token = CsrfToken::from_request_parts(&mut parts, &state).await;
    let given = parts
        .headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    match token {
        Ok(token) if !given.is_empty() && token.verify(&given).is_ok() => {
            next.run(Request::from_parts(parts, body)).await
        }
        _ => WebError::Forbidden(
            "missing or stale CSRF token: reload the page (API clients: send the `csrf` of GET /api/session as X-CSRF-Token)"
                .to_string(),
        )
        .into_response(),
    }
}

/// Refuses a `Host` the dashboard does not answer to ([`AppState::allowed_hosts`]): a name of
/// an attacker's site resolved to this address (DNS rebinding) does not reach the API.
async fn host_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.allowed_hosts.is_empty() {
        return next.run(req).await;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    let Some(host) = host else {
        // HTTP/1.0 without Host: nothing names another site.
        return next.run(req).await;
    };
    // Without the port: `[::1]:8080` → `[::1]`, `localhost:8080` → `localhost`.
    let name = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
    .to_ascii_lowercase();
    if state.allowed_hosts.contains(&name) {
        return next.run(req).await;
    }
    tracing::warn!(host = %crate::shorten(&name, 64), "dashboard: request for another host refused");
    WebError::Invalid(format!(
        "this dashboard does not answer to the host `{}`: open it by one of {}, or add the name to [dashboard] allowed_hosts",
        crate::shorten(&name, 64),
        state.allowed_hosts.join(", ")
    ))
    .into_response()
}

/// Counts requests and their latency by route.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    // A label per method the API knows; anything else is one series, not one per invention.
    let method = match *req.method() {
        Method::GET | Method::POST | Method::DELETE | Method::HEAD | Method::OPTIONS => {
            req.method().as_str().to_string()
        }
        _ => "other".to_string(),
    };
    let started = Instant::now();
    let response = next.run(req).await;
    let m = &state.metrics;
    m.latency
        .with_label_values(&[route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .with_label_values(&[route.as_str(), method.as_str(), response.status().as_str()])
        .inc();
    response
}

// ---------------------------------------------------------------------------------------------
// Session

/// Who is logged in, the CSRF token, and what the dashboard offers.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    /// The user, if logged in.
    pub user: Option<String>,
    /// Their role.
    pub role: Option<Role>,
    /// Send as `X-CSRF-Token` on POST and DELETE.
    pub csrf: String,
    /// No user exists yet: use the setup link printed by the server.
    pub setup_required: bool,
    /// The dashboard's title.
    pub title: String,
    /// Locale of dates and numbers.
    pub locale: String,
    /// The pages (only the public ones when not logged in).
    pub pages: Vec<PageSummary>,
    /// The theme's colours by name (`primary`, `background`, `surface`, `text`, `muted`),
    /// those the project sets.
    pub theme: std::collections::BTreeMap<String, String>,
    /// The lists users keep (`[dashboard.lists]`).
    pub lists: Vec<ListSummary>,
}

/// A page as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageSummary {
    /// Name (URL path segment).
    pub name: String,
    /// Title.
    pub title: String,
    /// A line under the title.
    pub description: Option<String>,
    /// Filters naming a starrable entity.
    pub favourite: Vec<String>,
    /// Shown without logging in.
    pub public: bool,
    /// Panels, in order.
    pub panels: Vec<PanelSummary>,
}

/// A list users keep.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListSummary {
    /// Name (the panels' `$NAME`).
    pub name: String,
    /// What a ticked box means.
    pub label: String,
}

/// A panel as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct PanelSummary {
    /// Name.
    pub name: String,
    /// Kind.
    #[schema(value_type = String)]
    pub kind: PanelKind,
    /// Title.
    pub title: String,
    /// Grid columns (1 to 4).
    pub width: u8,
    /// Tables it reads (it refreshes when they change).
    pub tables: Vec<String>,
    /// The x column.
    pub x: Option<String>,
    /// Series columns.
    pub y: Vec<String>,
    /// Series against the right axis.
    pub y2: Vec<String>,
    /// Column splitting rows into series.
    pub series: Option<String>,
    /// For a choropleth map: the GeoJSON property naming each polygon.
    pub regions: Option<String>,
    /// Unit of a KPI.
    pub unit: Option<String>,
    /// Rows per page (table) or count (top).
    pub limit: Option<usize>,
    /// For `alerts`: the alerts whose firings it lists.
    pub alerts: Vec<String>,
    /// Colours of series (or of `series` values) by name.
    pub colors: std::collections::BTreeMap<String, String>,
    /// A line under the panel.
    pub note: Option<String>,
    /// How columns are shown (`image`, `link`), by name.
    #[schema(value_type = Object)]
    pub formats: std::collections::BTreeMap<String, affluent_config::schema::CellFormat>,
    /// A checkbox per row putting column `key`'s value in the user's list `list`.
    #[schema(value_type = Option<Object>)]
    pub toggle: Option<affluent_config::schema::ToggleConfig>,
    /// The lists its query reads (`$NAME`): it is shown again when one changes.
    pub lists: Vec<String>,
}

/// The alerts an alerts panel lists: those it names, or every alert of the project.
fn panel_alerts(state: &AppState, panel: &PanelConfig) -> Vec<String> {
    if panel.kind != PanelKind::Alerts {
        Vec::new()
    } else if panel.alerts.is_empty() {
        state.project.alerts.keys().cloned().collect()
    } else {
        panel.alerts.clone()
    }
}

fn summaries(state: &AppState, logged_in: bool) -> Vec<PageSummary> {
    let known = state.live.warehouse().names();
    state
        .project
        .pages
        .iter()
        .filter(|(_, p)| logged_in || p.public)
        .map(|(name, p)| PageSummary {
            name: name.clone(),
            title: p.title.clone().unwrap_or_else(|| name.replace('_', " ")),
            description: p.description.clone(),
            favourite: p.favourite.clone(),
            public: p.public,
            panels: p
                .panels
                .iter()
                .map(|(n, panel)| PanelSummary {
                    name: n.clone(),
                    kind: panel.kind,
                    title: panel.title.clone().unwrap_or_else(|| n.replace('_', " ")),
                    width: panel
                        .width
                        .unwrap_or(if panel.kind == PanelKind::Kpi { 1 } else { 2 }),
                    tables: if panel.kind == PanelKind::Alerts {
                        vec![crate::alerts::FIRINGS.to_string()]
                    } else {
                        pages::tables_of(panel.sql.as_deref().unwrap_or_default(), &known)
                    },
                    x: panel.x.clone(),
                    y: panel.y.clone(),
                    y2: panel.y2.clone(),
                    series: panel.series.clone(),
                    regions: panel.regions.clone(),
                    unit: panel.unit.clone(),
                    limit: panel.limit,
                    alerts: panel_alerts(state, panel),
                    colors: panel.colors.clone(),
                    note: panel.note.clone(),
                    formats: panel.formats.clone(),
                    toggle: panel.toggle.clone(),
                    lists: affluent_config::placeholders(panel.sql.as_deref().unwrap_or_default())
                        .into_iter()
                        .filter(|p| state.project.dashboard.lists.contains_key(p))
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

async fn session_payload(
    state: &AppState,
    session: &Session,
    token: &CsrfToken,
) -> Result<SessionInfo, WebError> {
    let user = user_of(session, state).await?;
    let csrf = token
        .authenticity_token()
        .map_err(|e| WebError::internal("the CSRF token", e.to_string()))?;
    Ok(SessionInfo {
        setup_required: state.users.count().await? == 0,
        title: state
            .project
            .dashboard
            .title
            .clone()
            .unwrap_or_else(|| state.project.name.clone()),
        locale: state
            .project
            .dashboard
            .locale
            .clone()
            .unwrap_or_else(|| "en-GB".to_string()),
        pages: summaries(state, user.is_some()),
        theme: state
            .project
            .dashboard
            .theme
            .as_ref()
            .map(|t| {
                t.colours()
                    .into_iter()
                    .map(|(n, c)| (n.to_string(), c.to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        lists: state
            .project
            .dashboard
            .lists
            .iter()
            .map(|(name, l)| ListSummary {
                name: name.clone(),
                label: l.label.clone().unwrap_or_else(|| name.replace('_', " ")),
            })
            .collect(),
        role: user.as_ref().map(|u| u.role),
        user: user.map(|u| u.name),
        csrf,
    })
}

#[utoipa::path(get, path = "/api/session", tag = "session",
    responses(
        (status = 200, description = "The session and a CSRF token (also set as a cookie)", body = SessionInfo),
        (status = 500, description = "Internal error (the detail is in the server's log, under the request id)", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn session_info(
    State(state): State<AppState>,
    session: Session,
    token: CsrfToken,
) -> Result<Response, WebError> {
    let info = session_payload(&state, &session, &token).await?;
    Ok((token, Json(info)).into_response())
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginBody {
    /// User name.
    pub name: String,
    /// Password.
    pub password: String,
}

#[utoipa::path(post, path = "/api/login", tag = "session", request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in", body = SessionInfo),
        (status = 400, description = "Not a JSON body with a name and a password (any content type is read as JSON), or larger than 64 KiB", body = ErrorBody),
        (status = 401, description = "Wrong name or password", body = ErrorBody),
        (status = 403, description = "No valid CSRF token: send the `csrf` of GET /api/session as X-CSRF-Token", body = ErrorBody),
        (status = 429, description = "Too many failures for this account and address, this network or this account: wait the `Retry-After` seconds (waits double with each failure)", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
        (status = 500, description = "Internal error (the detail is in the server's log, under the request id)", body = ErrorBody),
        (status = 503, description = "Too many password checks at once, or the state store does not answer: try again (`Retry-After`)", body = ErrorBody)))]
async fn login(
    State(state): State<AppState>,
    session: Session,
    token: CsrfToken,
    req: Request,
) -> Result<Response, WebError> {
    let ip = client_ip(
        req.headers(),
        req.extensions(),
        &state.project.dashboard.trusted_proxies,
    );
    let body = axum::body::to_bytes(req.into_body(), 64 * 1024)
        .await
        .map_err(|e| WebError::Invalid(e.to_string()))?;
    let LoginBody { name, password } = serde_json::from_slice(&body).map_err(|e| {
        WebError::Invalid(format!(
            "expected {{\"name\": ..., \"password\": ...}}: {e}"
        ))
    })?;
    let account = crate::throttle::account_key(&name);
    let attempt = match state.throttle.attempt(&name, ip).await {
        Ok(attempt) => attempt,
        Err(e) => {
            if let WebError::Throttled(_) = e {
                tracing::warn!(%account, %ip, "dashboard: login throttled");
            }
            return Err(e);
        }
    };
    match state.users.verify(&name, &password).await {
        Ok(Some(_)) => {
            state.throttle.succeeded(attempt).await?;
            tracing::info!(user = %account, %ip, "dashboard: login");
            log_in(&state, &session, token, &name).await
        }
        Ok(None) => {
            state.throttle.failed(attempt).await?;
            tracing::warn!(%account, %ip, "dashboard: failed login");
            Err(WebError::Unauthorized(
                "wrong user name or password".to_string(),
            ))
        }
        Err(e) => {
            // Not checked (the server sheds load): the attempt does not count.
            state.throttle.cancel(attempt).await?;
            Err(e)
        }
    }
}

#[utoipa::path(post, path = "/api/logout", tag = "session",
    responses(
        (status = 204, description = "Logged out"),
        (status = 403, description = "No valid CSRF token: send the `csrf` of GET /api/session as X-CSRF-Token", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn logout(session: Session) -> Result<StatusCode, WebError> {
    session.flush().await.map_err(WebError::store)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The first admin, with the one-time setup token.
#[derive(Debug, Deserialize, ToSchema)]
pub struct SetupBody {
    /// The token of the setup link printed at start.
    pub token: String,
    /// The admin's name: 1 to 64 letters, digits, `_`, `-`, `.` or `@`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.@-]+$")]
    pub name: String,
    /// The admin's password (8 characters or more).
    #[schema(min_length = 8)]
    pub password: String,
}

// The schemas' `min_length` of passwords is this bound.
const _: () = assert!(crate::auth::MIN_PASSWORD == 8);

#[utoipa::path(post, path = "/api/setup", tag = "session", request_body = SetupBody,
    responses(
        (status = 200, description = "Admin created and logged in", body = SessionInfo),
        (status = 400, description = "Not JSON, or an invalid name or password", body = ErrorBody),
        (status = 403, description = "Wrong token, users exist already, or no valid CSRF token", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON, but not of the request body's schema (a missing or mistyped field)", body = ErrorBody),
        (status = 500, description = "Internal error (the detail is in the server's log, under the request id)", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn setup(
    State(state): State<AppState>,
    session: Session,
    token: CsrfToken,
    ApiJson(body): ApiJson<SetupBody>,
) -> Result<Response, WebError> {
    let users_exist = state.users.count().await? > 0;
    let expected = state.setup_token().await?;
    let valid = expected
        .as_deref()
        .is_some_and(|t| crate::auth::constant_time_eq(t.as_bytes(), body.token.as_bytes()));
    if !valid {
        return Err(WebError::Forbidden(if users_exist {
            "this setup link is not valid any more: users exist already (log in, or ask an admin)"
                .to_string()
        } else {
            format!(
                "this setup link is not valid: it works once, for {} minutes after the server starts; restart it for a new link, or create the admin with `affluent user add NAME --role admin`",
                state.setup_ttl.as_secs() / 60
            )
        }));
    }
    state
        .users
        .add(&body.name, &body.password, Role::Admin)
        .await?;
    *state.setup_token.lock().unwrap_or_else(|p| p.into_inner()) = None;
    log_in(&state, &session, token, &body.name).await
}

/// Starts `name`'s session under a new id (no fixation) and answers with the session info.
async fn log_in(
    state: &AppState,
    session: &Session,
    token: CsrfToken,
    name: &str,
) -> Result<Response, WebError> {
    session.cycle_id().await.map_err(WebError::store)?;
    session
        .insert("user", name)
        .await
        .map_err(WebError::store)?;
    let info = session_payload(state, session, &token).await?;
    Ok((token, Json(info)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Pages

#[utoipa::path(get, path = "/api/pages", tag = "pages",
    responses((status = 200, description = "Pages and their panels", body = Vec<PageSummary>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn list_pages(State(state): State<AppState>, _user: CurrentUser) -> Json<Vec<PageSummary>> {
    Json(summaries(&state, true))
}

pub(crate) fn find_page<'a>(state: &'a AppState, page: &str) -> Result<&'a PageConfig, WebError> {
    state.project.pages.get(page).ok_or_else(|| {
        WebError::NotFound(format!(
            "no page `{page}` (pages: {})",
            state
                .project
                .pages
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

pub(crate) fn find_panel<'a>(
    page_cfg: &'a PageConfig,
    page: &str,
    panel: &str,
) -> Result<&'a PanelConfig, WebError> {
    page_cfg
        .panels
        .get(panel)
        .ok_or_else(|| WebError::NotFound(format!("page `{page}` has no panel `{panel}`")))
}

pub(crate) fn today(state: &AppState) -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(state.project.timezone.clone())
        .date()
}

fn table_view(q: &[(String, String)]) -> Result<TableView, WebError> {
    let get = |k: &str| q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let number = |k: &str| -> Result<Option<u64>, WebError> {
        get(k)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    WebError::Invalid(format!("`{k}` must be a non-negative integer (got `{v}`)"))
                })
            })
            .transpose()
    };
    Ok(TableView {
        sort: get("_sort").filter(|s| !s.is_empty()).map(String::from),
        desc: get("_dir") == Some("desc"),
        offset: number("_offset")?.unwrap_or(0),
        limit: number("_limit")?.map(|l| l.min(10_000)),
    })
}

/// Query parameters: the page's filters by name (`?agency=lyon_1&period=last_8_weeks`), and
/// for tables `_sort`, `_dir` (`asc`/`desc`), `_offset`, `_limit`.
pub(crate) type FilterQuery = ApiQuery<Vec<(String, String)>>;

#[utoipa::path(get, path = "/api/pages/{page}/filters", tag = "pages",
    description = "The page's filters are query parameters named after them (`?agency=lyon_1&period=last_8_weeks`; see GET /api/pages/{page}/filters); a filter left out takes its default.",
    params(("page" = String, Path, description = "Page name")),
    responses((status = 200, description = "Filters with options and current values", body = Vec<ResolvedFilter>),
        (status = 400, description = "A filter value is invalid", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such page or panel", body = ErrorBody),
        (status = 422, description = "The query stopped at a bound of `[query]` (time, memory, rows): a narrower period or filter may do", body = ErrorBody),
        (status = 500, description = "The query failed (the detail is in the server's log, under the request id)", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn page_filters(
    State(state): State<AppState>,
    visitor: Visitor,
    ApiPath(page): ApiPath<String>,
    ApiQuery(q): FilterQuery,
) -> Result<Json<Vec<ResolvedFilter>>, WebError> {
    let page_cfg = find_page(&state, &page)?;
    visitor.may_see(page_cfg)?;
    let lists = state.lists.params(visitor.name()).await?;
    let reader = state.live.reader().await;
    let resolved = pages::resolve(&reader, page_cfg, &q, today(&state), lists).await?;
    Ok(Json(resolved.filters))
}

#[utoipa::path(get, path = "/api/pages/{page}/panels/{panel}", tag = "pages",
    description = "The page's filters are query parameters named after them (`?agency=lyon_1&period=last_8_weeks`; see GET /api/pages/{page}/filters); a filter left out takes its default.",
    params(("page" = String, Path, description = "Page name"), ("panel" = String, Path, description = "Panel name"),
        ("_sort" = Option<String>, Query, description = "Tables: the column to sort by"),
        ("_dir" = Option<String>, Query, description = "Tables: `desc` sorts descending, anything else ascending"),
        ("_offset" = Option<u64>, Query, minimum = 0, maximum = 18446744073709551615_u64, description = "Tables: rows to skip"),
        ("_limit" = Option<u64>, Query, minimum = 0, maximum = 18446744073709551615_u64, description = "Tables: rows to return (at most 10000)")),
    responses((status = 200, description = "The panel's rows for the filters in the query string", body = PanelData),
        (status = 400, description = "A filter value or a table parameter is invalid", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such page or panel", body = ErrorBody),
        (status = 422, description = "The query stopped at a bound of `[query]` (time, memory, rows): a narrower period or filter may do", body = ErrorBody),
        (status = 500, description = "The query failed (the detail is in the server's log, under the request id)", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn panel(
    State(state): State<AppState>,
    visitor: Visitor,
    ApiPath((page, panel)): ApiPath<(String, String)>,
    ApiQuery(q): FilterQuery,
) -> Result<Json<PanelData>, WebError> {
    let page_cfg = find_page(&state, &page)?;
    visitor.may_see(page_cfg)?;
    let panel_cfg = find_panel(page_cfg, &page, &panel)?;
    let reader = state.live.reader().await;
    if panel_cfg.kind == PanelKind::Alerts {
        let Some(user) = &visitor.0 else {
            return Err(WebError::Unauthorized("log in first".to_string()));
        };
        let alerts = panel_alerts(&state, panel_cfg);
        let firings = crate::alerts::list(
            &reader,
            &state.seen,
            &user.name,
            &alerts,
            panel_cfg.limit.unwrap_or(50),
        )
        .await?;
        return Ok(Json(PanelData {
            name: panel.clone(),
            kind: panel_cfg.kind,
            title: panel_cfg
                .title
                .clone()
                .unwrap_or_else(|| panel.replace('_', " ")),
            columns: Vec::new(),
            rows: Vec::new(),
            total: Some(firings.total),
            compare: None,
            text: None,
            firings: Some(firings),
        }));
    }
    let lists = state.lists.params(visitor.name()).await?;
    let resolved = pages::resolve(&reader, page_cfg, &q, today(&state), lists).await?;
    let view = table_view(&q)?;
    Ok(Json(
        pages::run_panel(&reader, page_cfg, &panel, panel_cfg, &resolved, &view).await?,
    ))
}

#[utoipa::path(get, path = "/api/pages/{page}/panels/{panel}/csv", tag = "pages",
    description = "The page's filters are query parameters named after them (`?agency=lyon_1&period=last_8_weeks`; see GET /api/pages/{page}/filters); a filter left out takes its default.",
    params(("page" = String, Path, description = "Page name"), ("panel" = String, Path, description = "Panel name"),
        ("_sort" = Option<String>, Query, description = "Tables: the column to sort by"),
        ("_dir" = Option<String>, Query, description = "Tables: `desc` sorts descending, anything else ascending"),
        ("_offset" = Option<u64>, Query, minimum = 0, maximum = 18446744073709551615_u64, description = "Tables: rows to skip"),
        ("_limit" = Option<u64>, Query, minimum = 0, maximum = 18446744073709551615_u64, description = "Tables: rows to return (at most 10000)")),
    responses((status = 200, description = "Every row of the panel as CSV", body = String, content_type = "text/csv"),
        (status = 400, description = "A filter value or a table parameter is invalid, or a text panel (no rows)", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 404, description = "No such page or panel", body = ErrorBody),
        (status = 422, description = "The query stopped at a bound of `[query]` (time, memory, rows): a narrower period or filter may do", body = ErrorBody),
        (status = 500, description = "The query failed (the detail is in the server's log, under the request id)", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn panel_csv(
    State(state): State<AppState>,
    visitor: Visitor,
    ApiPath((page, panel)): ApiPath<(String, String)>,
    ApiQuery(q): FilterQuery,
) -> Result<Response, WebError> {
    let page_cfg = find_page(&state, &page)?;
    visitor.may_see(page_cfg)?;
    let panel_cfg = find_panel(page_cfg, &page, &panel)?;
    if panel_cfg.kind == PanelKind::Text {
        return Err(WebError::Invalid("a text panel has no rows".to_string()));
    }
    let reader = state.live.reader().await;
    let csv = if panel_cfg.kind == PanelKind::Alerts {
        crate::alerts::csv(&reader, &panel_alerts(&state, panel_cfg)).await?
    } else {
        let lists = state.lists.params(visitor.name()).await?;
        let resolved = pages::resolve(&reader, page_cfg, &q, today(&state), lists).await?;
        let view = table_view(&q)?;
        let sql = pages::panel_sql(&reader, &panel, panel_cfg, &resolved.params, &view).await?;
        reader
            .csv(&sql, &resolved.params)
            .await
            .map_err(WebError::query(format!("panel `{panel}`")))?
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{page}-{panel}.csv\""),
            ),
        ],
        csv,
    )
        .into_response())
}

async fn panel_geojson(
    State(state): State<AppState>,
    visitor: Visitor,
    ApiPath((page, panel)): ApiPath<(String, String)>,
) -> Result<Response, WebError> {
    let page_cfg = find_page(&state, &page)?;
    visitor.may_see(page_cfg)?;
    let panel_cfg = find_panel(page_cfg, &page, &panel)?;
    let file = panel_cfg
        .geojson
        .as_ref()
        .ok_or_else(|| WebError::NotFound(format!("panel `{panel}` has no geojson")))?;
    let path = state.project.dir.join(file);
    let body = tokio::fs::read(&path)
        .await
        .map_err(|e| WebError::NotFound(format!("cannot read {}: {e}", path.display())))?;
    Ok(([(header::CONTENT_TYPE, "application/geo+json")], body).into_response())
}

/// One event of `GET /api/events`, as OpenAPI 3.1 describes a `text/event-stream`: an object
/// of the event's fields, `data` JSON text (`contentSchema`).
#[derive(Debug)]
struct ServerSentEvent;

impl utoipa::PartialSchema for ServerSentEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        let event = |name: &str, description: &str, data: serde_json::Value| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(description))
                .property(
                    "event",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([name])),
                )
                .required("event")
                .property(
                    "data",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .content_media_type("application/json")
                        .extensions(Some(utoipa::openapi::extensions::Extensions::from_iter([
                            ("contentSchema", data),
                        ]))),
                )
                .required("data")
        };
        let hello = serde_json::json!({
            "type": "object",
            "required": ["updated"],
            "properties": {"updated": {"type": "string", "description": "The tables' last update, RFC 3339"}}
        });
        let change = serde_json::to_value(<crate::live::Change as utoipa::PartialSchema>::schema())
            .unwrap_or_default();
        OneOfBuilder::new()
            .item(event(
                "hello",
                "First: when the tables were last updated",
                hello,
            ))
            .item(event(
                "change",
                "Tables with a new commit (a Change)",
                change,
            ))
            .into()
    }
}

impl ToSchema for ServerSentEvent {}

#[utoipa::path(get, path = "/api/events", tag = "pages",
    responses(
        (status = 200, description = "Server-sent events, each described by ServerSentEvent: `hello` first (data: `{\"updated\": RFC 3339}`, the last update), then `change` (data: a Change) when tables change, and keep-alive comments. The stream ends when the session does (logout, expiry, a new password, the user removed).", body = ServerSentEvent, content_type = "text/event-stream"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn events(
    State(state): State<AppState>,
    session: Session,
    user: CurrentUser,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.live.subscribe();
    let hello = Event::default()
        .event("hello")
        .data(serde_json::json!({"updated": state.live.updated().to_string()}).to_string());
    let changes = tokio_stream::wrappers::BroadcastStream::new(rx).filter_map(|c| async move {
        let change = c.ok()?;
        Some(Ok(Event::default()
            .event("change")
            .data(serde_json::to_string(&change).ok()?)))
    });
    // The stream lasts as long as the session: checked every `session_check`.
    let id = session.id();
    let ended = async move {
        let sessions = SqlSessions::new(state.store.pool().clone());
        loop {
            tokio::time::sleep(state.session_check).await;
            let alive = match id {
                None => false,
                Some(id) => {
                    use tower_sessions::SessionStore;
                    match sessions.load(&id).await {
                        Ok(Some(record)) => {
                            record.data.get("user").and_then(|u| u.as_str())
                                == Some(user.name.as_str())
                        }
                        Ok(None) => false,
                        // The store not answering is not a logout: check again later.
                        Err(_) => true,
                    }
                }
            };
            if !alive {
                break;
            }
        }
    };
    Sse::new(
        futures::stream::once(async move { Ok(hello) })
            .chain(changes)
            .take_until(ended),
    )
    .keep_alive(KeepAlive::default())
}

// ---------------------------------------------------------------------------------------------
// Alerts

#[utoipa::path(get, path = "/api/alerts/unseen", tag = "alerts",
    responses((status = 200, description = "The user's unseen alert firings, per alert (the count in the navigation)", body = crate::alerts::UnseenCounts),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 500, description = "The firings could not be read (the detail is in the server's log, under the request id)", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn unseen_alerts(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<crate::alerts::UnseenCounts>, WebError> {
    let reader = state.live.reader().await;
    let known: Vec<String> = state.project.alerts.keys().cloned().collect();
    Ok(Json(
        crate::alerts::unseen(&reader, &state.seen, &user.name, &known).await?,
    ))
}

#[utoipa::path(post, path = "/api/alerts/seen", tag = "alerts", request_body = crate::alerts::MarkSeen,
    description = "Marks the firings named seen for the current user only, as an alerts panel lists them. Marking a firing again changes nothing.",
    responses((status = 200, description = "How many firings were newly marked", body = crate::alerts::Marked),
        (status = 400, description = "Not JSON, no firing, or more than 1000", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "No valid CSRF token: send the `csrf` of GET /api/session as X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such alert, or no such firing", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON, but not of the request body's schema (a missing or mistyped field)", body = ErrorBody),
        (status = 500, description = "The firings could not be read (the detail is in the server's log, under the request id)", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn mark_alerts_seen(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<crate::alerts::MarkSeen>,
) -> Result<Json<crate::alerts::Marked>, WebError> {
    let reader = state.live.reader().await;
    let known: Vec<String> = state.project.alerts.keys().cloned().collect();
    Ok(Json(
        crate::alerts::mark_firings(&reader, &state.seen, &user.name, &body, &known).await?,
    ))
}

#[utoipa::path(post, path = "/api/alerts/seen/all", tag = "alerts", request_body = crate::alerts::MarkAllSeen,
    description = "Marks every firing of `alerts` (every alert when empty) seen for the current user only, up to `until` (an alerts panel's `newest`: one that fired since stays unseen).",
    responses((status = 200, description = "How many firings were newly marked", body = crate::alerts::Marked),
        (status = 400, description = "The body is not JSON", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "No valid CSRF token: send the `csrf` of GET /api/session as X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON, but not of the request body's schema (a missing or mistyped field)", body = ErrorBody),
        (status = 500, description = "The firings could not be read (the detail is in the server's log, under the request id)", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn mark_all_alerts_seen(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<crate::alerts::MarkAllSeen>,
) -> Result<Json<crate::alerts::Marked>, WebError> {
    let reader = state.live.reader().await;
    let known: Vec<String> = state.project.alerts.keys().cloned().collect();
    Ok(Json(
        crate::alerts::mark_all(&reader, &state.seen, &user.name, &body, &known).await?,
    ))
}

// ---------------------------------------------------------------------------------------------
// Favourites

/// An entity to star.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewFavourite {
    /// The page.
    pub page: String,
    /// The values of the page's `favourite` filters (exactly those), by filter name: text (256
    /// characters at most), a number, true/false or null.
    #[schema(value_type = std::collections::HashMap<String, FavouriteValue>)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// What to show in "My favourites" (200 characters at most; by default the values).
    #[schema(max_length = 200)]
    pub label: Option<String>,
}

#[utoipa::path(get, path = "/api/favourites", tag = "favourites",
    responses((status = 200, description = "The user's favourites", body = Vec<Favourite>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn list_favourites(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<Vec<Favourite>>, WebError> {
    Ok(Json(state.favourites.list(&user.name).await?))
}

#[utoipa::path(post, path = "/api/favourites", tag = "favourites", request_body = NewFavourite,
    responses((status = 200, description = "Starred; the user's favourites", body = Vec<Favourite>),
        (status = 400, description = "Not JSON, or not a favourite of this page: `params` must hold exactly the page's `favourite` filters, each a text (256 characters at most), a number, true/false or null; the label 200 characters at most", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "No valid CSRF token: send the `csrf` of GET /api/session as X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such page", body = ErrorBody),
        (status = 409, description = "The user has the most favourites kept (200): remove one first", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON, but not of the request body's schema (a missing or mistyped field)", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn add_favourite(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiJson(body): ApiJson<NewFavourite>,
) -> Result<Json<Vec<Favourite>>, WebError> {
    let page_cfg = find_page(&state, &body.page)?;
    if page_cfg.favourite.is_empty() {
        return Err(WebError::Invalid(format!(
            "page `{}` has nothing to star (no `favourite` filters)",
            body.page
        )));
    }
    let mut keys: Vec<&String> = body.params.keys().collect();
    keys.sort();
    let mut expected: Vec<&String> = page_cfg.favourite.iter().collect();
    expected.sort();
    if keys != expected {
        return Err(WebError::Invalid(format!(
            "a favourite of page `{}` is named by {}",
            body.page,
            page_cfg.favourite.join(", ")
        )));
    }
    for (key, value) in &body.params {
        let text_len = match value {
            serde_json::Value::String(t) => t.chars().count(),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) | serde_json::Value::Null => {
                0
            }
            _ => {
                return Err(WebError::Invalid(format!(
                    "`{key}` must be a filter's value (text, number, true/false or null), not a list or object"
                )));
            }
        };
        if text_len > crate::sessions::MAX_FAVOURITE_VALUE {
            return Err(WebError::Invalid(format!(
                "`{key}` is longer than {} characters",
                crate::sessions::MAX_FAVOURITE_VALUE
            )));
        }
    }
    if body
        .label
        .as_ref()
        .is_some_and(|l| l.chars().count() > crate::sessions::MAX_FAVOURITE_LABEL)
    {
        return Err(WebError::Invalid(format!(
            "the label is longer than {} characters",
            crate::sessions::MAX_FAVOURITE_LABEL
        )));
    }
    let label = body.label.clone().unwrap_or_else(|| {
        page_cfg
            .favourite
            .iter()
            .map(|k| {
                body.params
                    .get(k)
                    .map(|v| {
                        v.as_str()
                            .map(String::from)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join(" · ")
    });
    state
        .favourites
        .add(&user.name, &body.page, &body.params, &label)
        .await?;
    Ok(Json(state.favourites.list(&user.name).await?))
}

#[utoipa::path(delete, path = "/api/favourites/{id}", tag = "favourites",
    params(("id" = String, Path, description = "Favourite id")),
    responses((status = 204, description = "Removed"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "No valid CSRF token: send the `csrf` of GET /api/session as X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "The user has no such favourite", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn remove_favourite(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, WebError> {
    if state.favourites.remove(&user.name, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(WebError::NotFound(format!("no favourite `{id}`")))
    }
}

// ---------------------------------------------------------------------------------------------
// Lists

/// A value to add to a list.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ListItem {
    /// The value (the `key` column of a panel's `toggle`): 1 to 256 characters.
    #[schema(min_length = 1, max_length = 256)]
    pub item: String,
}

#[utoipa::path(get, path = "/api/lists", tag = "lists",
    responses((status = 200, description = "The user's values in each list (`[dashboard.lists]`), oldest first", body = Object),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn list_lists(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<std::collections::HashMap<String, Vec<String>>>, WebError> {
    Ok(Json(state.lists.of(&user.name).await?))
}

#[utoipa::path(post, path = "/api/lists/{list}/items", tag = "lists", request_body = ListItem,
    params(("list" = String, Path, description = "List name")),
    responses((status = 200, description = "Added (adding it again keeps one); the user's lists", body = Object),
        (status = 400, description = "An empty value or one longer than 256 characters", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "No valid CSRF token: send the `csrf` of GET /api/session as X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such list", body = ErrorBody),
        (status = 409, description = "The list holds 1,000 values, the most kept: remove one first", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON, but not of the request body's schema", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn add_to_list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath(list): ApiPath<String>,
    ApiJson(body): ApiJson<ListItem>,
) -> Result<Json<std::collections::HashMap<String, Vec<String>>>, WebError> {
    state.lists.add(&user.name, &list, &body.item).await?;
    Ok(Json(state.lists.of(&user.name).await?))
}

#[utoipa::path(delete, path = "/api/lists/{list}/items/{item}", tag = "lists",
    params(("list" = String, Path, description = "List name"), ("item" = String, Path, description = "The value")),
    responses((status = 204, description = "Removed"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "No valid CSRF token: send the `csrf` of GET /api/session as X-CSRF-Token", body = ErrorBody),
        (status = 404, description = "No such list, or the value is not in the user's list", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn remove_from_list(
    State(state): State<AppState>,
    user: CurrentUser,
    ApiPath((list, item)): ApiPath<(String, String)>,
) -> Result<StatusCode, WebError> {
    if state.lists.remove(&user.name, &list, &item).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(WebError::NotFound(format!(
            "`{item}` is not in your list `{list}`"
        )))
    }
}

/// A value of a favourite's filter: text (256 characters at most), a number, true/false or null.
#[derive(Debug)]
struct FavouriteValue;

impl utoipa::PartialSchema for FavouriteValue {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(crate::sessions::MAX_FAVOURITE_VALUE)),
            )
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .into()
    }
}

impl ToSchema for FavouriteValue {}

// ---------------------------------------------------------------------------------------------
// Users (admins)

/// A user to create.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewUser {
    /// Login name: 1 to 64 letters, digits, `_`, `-`, `.` or `@`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.@-]+$")]
    pub name: String,
    /// Password (8 characters or more).
    #[schema(min_length = 8)]
    pub password: String,
    /// Role.
    pub role: Role,
}

#[utoipa::path(get, path = "/api/users", tag = "users",
    responses((status = 200, description = "Every user", body = Vec<UserInfo>),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn list_users(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> Result<Json<Vec<UserInfo>>, WebError> {
    Ok(Json(state.users.list().await?))
}

#[utoipa::path(post, path = "/api/users", tag = "users", request_body = NewUser,
    responses((status = 200, description = "Created; every user", body = Vec<UserInfo>),
        (status = 400, description = "Not JSON, or an invalid name or password", body = ErrorBody),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin, or no valid CSRF token", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 413, description = "The body is larger than 2 MiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON, but not of the request body's schema (a missing or mistyped field)", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn add_user(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<Json<Vec<UserInfo>>, WebError> {
    state
        .users
        .add(&body.name, &body.password, body.role)
        .await?;
    Ok(Json(state.users.list().await?))
}

#[utoipa::path(delete, path = "/api/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name")),
    responses((status = 204, description = "Removed; their sessions and favourites too"),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin, or no valid CSRF token", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "An admin cannot remove themselves", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
async fn remove_user(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, WebError> {
    if name == admin.name {
        // The request is well formed; what it asks conflicts with who asks.
        return Err(WebError::Conflict("you cannot remove yourself".to_string()));
    }
    state.users.remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// HTML, assets, docs, health

async fn home(State(state): State<AppState>, session: Session) -> Result<Redirect, WebError> {
    if user_of(&session, &state).await?.is_none() {
        return Ok(Redirect::to("/login"));
    }
    Ok(match state.project.pages.keys().next() {
        Some(first) => Redirect::to(&format!("/pages/{first}")),
        None => Redirect::to("/favourites"),
    })
}

/// A page's shell: a public page's for anyone, others as [`shell_private`].
async fn shell_page(
    State(state): State<AppState>,
    ApiPath(page): ApiPath<String>,
    session: Session,
    req: Request,
) -> Result<Response, WebError> {
    if state.project.pages.get(&page).is_some_and(|p| p.public) {
        return Ok(Html(assets::INDEX_HTML).into_response());
    }
    shell_private(State(state), session, req).await
}

async fn shell_public() -> Html<&'static str> {
    Html(assets::INDEX_HTML)
}

/// The shell of a page that needs a login: anonymous visitors go to the login page, and come
/// back after it.
async fn shell_private(
    State(state): State<AppState>,
    session: Session,
    req: Request,
) -> Result<Response, WebError> {
    if user_of(&session, &state).await?.is_none() {
        let next = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let encoded: String = next
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_./".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        return Ok(Redirect::to(&format!("/login?next={encoded}")).into_response());
    }
    Ok(Html(assets::INDEX_HTML).into_response())
}

async fn asset(Path(file): Path<String>) -> Response {
    match assets::get(&file) {
        Some((body, content_type)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            body,
        )
            .into_response(),
        None => WebError::NotFound(format!("no asset `{file}`")).into_response(),
    }
}

async fn docs() -> Html<&'static str> {
    Html(assets::DOCS_HTML)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Liveness and the tables' freshness.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    status: &'static str,
    tables_updated: String,
}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The server and its state store answer", body = Health),
        (status = 503, description = "The state store does not answer", body = ErrorBody)))]
async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, WebError> {
    state.users.count().await?;
    Ok(Json(Health {
        status: "ok",
        tables_updated: state.live.updated().to_string(),
    }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    for task in state
        .project
        .sources
        .keys()
        .map(TaskId::source)
        .chain(state.project.models.keys().map(TaskId::model))
    {
        if let Ok(Some(run)) = state.store.last_success(&task).await
            && let Some(finished) = run.finished
        {
            state
                .metrics
                .last_success
                .with_label_values(&[task.to_string().as_str()])
                .set(finished.as_millisecond() as f64 / 1000.0);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(req: Request) -> WebError {
    WebError::NotFound(format!("no route {} {}", req.method(), req.uri().path()))
}

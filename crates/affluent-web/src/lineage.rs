//! "Where does this come from": for a point or row of a panel, the models and tables its data is
//! computed from and, when the panel declares `lineage`, the landing entries of the rows behind
//! the point, each with its request; admins open the raw response.

use std::collections::HashMap;

use affluent_tables::Param;
use affluent_tables::lineage::EntryMeta;
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::{AdminUser, ApiPath, FilterQuery, Visitor, find_page, find_panel, today};
use crate::{AppState, ErrorBody, WebError};

/// Entries listed for one point, the newest.
const MAX_ENTRIES: usize = 50;
/// The most of a raw response shown.
const MAX_BODY: usize = 1 << 20;

/// A table or model upstream of a panel.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    /// Its name.
    pub name: String,
    /// `model`, `table` (loaded from a source) or `system` (written by affluent).
    pub kind: String,
    /// The source a table is loaded from.
    pub source: Option<String>,
    /// What a model reads.
    pub reads: Vec<String>,
}

/// A landing entry: one response (or file) as it was fetched.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    /// The source that landed it.
    pub source: String,
    /// Its id.
    pub entry: String,
    /// Rows behind the point that came from it.
    pub rows: Option<u64>,
    /// When it was fetched (RFC 3339).
    pub fetched_at: String,
    /// The HTTP status (200 for a file).
    pub status: u16,
    /// The request's method.
    pub method: Option<String>,
    /// The request's URL, or the file's path (secrets masked).
    pub url: String,
    /// The data interval it covered.
    pub interval: Option<String>,
    /// The body's size.
    pub bytes: u64,
}

/// Where a point comes from.
#[derive(Debug, Serialize, ToSchema)]
pub struct LineageView {
    /// The tables and models the panel reads, and what they are computed from.
    pub upstream: Vec<NodeView>,
    /// The landing entries of the rows behind the point, newest first (with `lineage`).
    pub entries: Vec<EntryView>,
    /// Why no entry is listed, when none is.
    pub note: Option<String>,
}

/// A raw response.
#[derive(Debug, Serialize, ToSchema)]
pub struct RawView {
    /// The entry.
    pub entry: EntryView,
    /// Its `Content-Type`, as answered.
    pub content_type: Option<String>,
    /// The body, as text (bytes that are not UTF-8 are replaced); the first MiB.
    pub body: String,
    /// Whether the body was longer than what is shown.
    pub truncated: bool,
}

fn entry_view(meta: &EntryMeta, rows: Option<u64>) -> EntryView {
    EntryView {
        source: meta.source.clone(),
        entry: meta.entry_id.clone(),
        rows,
        fetched_at: meta.fetched_at.to_string(),
        status: meta.status,
        method: meta.method.clone(),
        url: meta.url.clone(),
        interval: meta.interval.map(|i| i.to_string()),
        bytes: meta.bytes,
    }
}

/// A value of the point clicked, typed as it reads: an integer or a number written as one
/// (`01000` stays text), a date, else text (a date-time too: compared with a timestamp
/// column, the engine reads it as one).
fn point_param(value: &str) -> Param {
    if let Ok(i) = value.parse::<i64>()
        && i.to_string() == value
    {
        return Param::Int(i);
    }
    if let Ok(f) = value.parse::<f64>()
        && f.is_finite()
        && f.to_string() == value
    {
        return Param::Float(f);
    }
    if let Ok(d) = value.parse::<jiff::civil::Date>() {
        return Param::Date(d);
    }
    Param::Text(value.to_string())
}

#[utoipa::path(get, path = "/api/pages/{page}/panels/{panel}/lineage", tag = "pages",
    description = "The page's filters are query parameters named after them, as for the panel; the point or row clicked is given as `point.COLUMN=VALUE` (`point.date=2024-05-01`), bound to the panel's `lineage` query as `$point_COLUMN`.",
    params(("page" = String, Path, description = "Page name"), ("panel" = String, Path, description = "Panel name")),
    responses((status = 200, description = "The tables and models upstream, and the landing entries of the rows behind the point", body = LineageView),
        (status = 400, description = "A filter value or a point column that is not valid", body = ErrorBody),
        (status = 401, description = "Not logged in (a public page's lineage too)", body = ErrorBody),
        (status = 404, description = "No such page or panel", body = ErrorBody),
        (status = 422, description = "The lineage query stopped at a bound of `[query]`", body = ErrorBody),
        (status = 500, description = "The lineage query failed; the server's log has the details", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
pub(crate) async fn panel_lineage(
    State(state): State<AppState>,
    visitor: Visitor,
    ApiPath((page, panel)): ApiPath<(String, String)>,
    crate::api::ApiQuery(q): FilterQuery,
) -> Result<Json<LineageView>, WebError> {
    let page_cfg = find_page(&state, &page)?;
    // Where data comes from (requests, entries) is for users, even on a public page.
    if visitor.0.is_none() {
        return Err(WebError::Unauthorized("log in first".to_string()));
    }
    visitor.may_see(page_cfg)?;
    let panel_cfg = find_panel(page_cfg, &page, &panel)?;
    let warehouse = state.live.warehouse();
    let known = warehouse.names();
    let reads: Vec<String> = panel_cfg
        .sql
        .as_deref()
        .map(|sql| warehouse.tables_read(sql, &format!("panel `{panel}`")))
        .transpose()
        .map_err(WebError::query(format!("panel `{panel}`")))?
        .map(|t| t.into_iter().filter(|n| known.contains(n)).collect())
        .unwrap_or_default();
    let mut upstream: Vec<NodeView> = Vec::new();
    for t in &reads {
        for n in warehouse
            .upstream(t)
            .map_err(WebError::query(format!("panel `{panel}`")))?
        {
            if upstream.iter().any(|u| u.name == n.name) {
                continue;
            }
            upstream.push(NodeView {
                kind: match n.kind {
                    affluent_tables::lineage::NodeKind::Model => "model",
                    affluent_tables::lineage::NodeKind::Table => "table",
                    affluent_tables::lineage::NodeKind::System => "system",
                }
                .to_string(),
                name: n.name,
                source: n.source,
                reads: n.reads,
            });
        }
    }
    let Some(lineage) = &panel_cfg.lineage else {
        return Ok(Json(LineageView {
            upstream,
            entries: Vec::new(),
            note: Some(format!(
                "panel `{panel}` declares no `lineage` query: its rows cannot be traced to the responses they came from"
            )),
        }));
    };
    let reader = state.live.reader().await;
    let lists = state.lists.params(visitor.name()).await?;
    let resolved = crate::pages::resolve(&reader, page_cfg, &q, today(&state), lists).await?;
    let mut params: HashMap<String, Param> = resolved.params.clone();
    for (k, v) in &q {
        let Some(column) = k.strip_prefix("point.") else {
            continue;
        };
        if column.is_empty()
            || column.len() > 64
            || !column
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(WebError::Invalid(format!(
                "`{}` is not a point column: use letters, digits and `_`",
                crate::shorten(k, 70)
            )));
        }
        params.insert(format!("point_{column}"), point_param(v));
    }
    // Every `$point_*` the query uses must be given.
    for p in affluent_config::placeholders(lineage) {
        if p.starts_with("point_") && !params.contains_key(&p) {
            return Err(WebError::Invalid(format!(
                "the lineage of panel `{panel}` needs the point's `{}`: give `point.{}=VALUE`",
                &p["point_".len()..],
                &p["point_".len()..]
            )));
        }
    }
    // On lines of its own: a trailing `--` comment in the project's query ends there.
    let inner = lineage.trim().trim_end_matches(';');
    let sql = format!(
        "SELECT CAST(\"_affluent_entry\" AS VARCHAR) AS entry, count(*) AS n FROM (\n{inner}\n) AS lineage GROUP BY 1 ORDER BY 1 DESC LIMIT {MAX_ENTRIES}"
    );
    let rows = reader
        .rows(&sql, &params)
        .await
        .map_err(WebError::query(format!("the lineage of panel `{panel}`")))?;
    let lineage_reads: Vec<String> = warehouse
        .tables_read(lineage, &format!("the lineage of panel `{panel}`"))
        .map_err(WebError::query(format!("the lineage of panel `{panel}`")))?
        .into_iter()
        .collect();
    let sources = warehouse
        .sources_of(&lineage_reads)
        .map_err(WebError::query(format!("the lineage of panel `{panel}`")))?;
    let found: Vec<(String, Option<u64>)> = rows
        .rows
        .iter()
        .filter_map(|row| {
            let id = row.first()?.as_str()?.to_string();
            Some((id, row.get(1).and_then(serde_json::Value::as_u64)))
        })
        .collect();
    // The landing index is read from disk: off the async threads.
    let ids: Vec<String> = found.iter().map(|(id, _)| id.clone()).collect();
    let lookup = warehouse.clone();
    let metas = tokio::task::spawn_blocking(move || lookup.landing_entries(&sources, &ids))
        .await
        .map_err(|e| WebError::internal("reading the landing index", e))?;
    let entries: Vec<EntryView> = found
        .iter()
        .filter_map(|(id, count)| metas.get(id).map(|m| entry_view(m, *count)))
        .collect();
    let note = entries.is_empty().then(|| {
        "no row behind this point came from a landing entry still kept (or none matches)"
            .to_string()
    });
    Ok(Json(LineageView {
        upstream,
        entries,
        note,
    }))
}

#[utoipa::path(get, path = "/api/landing/{source}/{entry}", tag = "pages",
    params(("source" = String, Path, description = "Source name"), ("entry" = String, Path, description = "Landing entry id")),
    responses((status = 200, description = "The raw response as it was landed (secrets masked in the request; the first MiB of the body)", body = RawView),
        (status = 401, description = "Not logged in", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such source or entry", body = ErrorBody),
        (status = 500, description = "The entry could not be read; the server's log has the details", body = ErrorBody),
        (status = 503, description = "The state store does not answer: try again shortly", body = ErrorBody)))]
pub(crate) async fn raw_response(
    State(state): State<AppState>,
    _admin: AdminUser,
    ApiPath((source, entry)): ApiPath<(String, String)>,
) -> Result<Json<RawView>, WebError> {
    if !state.project.sources.contains_key(&source) {
        return Err(WebError::NotFound(format!(
            "no source named `{}`",
            crate::shorten(&source, 64)
        )));
    }
    let warehouse = state.live.warehouse();
    let Some(meta) = warehouse.landing_entry(std::slice::from_ref(&source), &entry) else {
        return Err(WebError::NotFound(format!(
            "no landing entry `{}` of source `{source}` (pruned, or never landed)",
            crate::shorten(&entry, 80)
        )));
    };
    let (body, truncated) = warehouse
        .landing_body(&meta, MAX_BODY)
        .map_err(|e| WebError::internal("reading a landing entry", e))?;
    let content_type = meta
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.clone());
    Ok(Json(RawView {
        entry: entry_view(&meta, None),
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
        truncated,
    }))
}

//! Pages: filters resolved into bound parameters, panels run as queries.
//!
//! A request carries the filter state in its query string (`?agency=lyon_1&counter=0&period=
//! 2024-05-01..2024-05-31`), so a URL is a shareable view. Missing values take the filter's
//! default. Every value reaches SQL as a bound `$parameter`, never as SQL text.

use std::collections::HashMap;

use affluent_config::schema::{FilterConfig, FilterKind, PageConfig, PanelConfig, PanelKind};
use affluent_tables::{ColumnInfo, Param, Reader, Rows};
use jiff::ToSpan;
use jiff::civil::Date;
use serde::Serialize;

use crate::WebError;

/// The value that selects "All" in a select filter.
pub const ALL: &str = "*";

/// One option of a select or multi filter.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FilterOption {
    /// The value, as sent back in URLs.
    pub value: String,
    /// What the user sees.
    pub label: String,
}

/// A filter with its options and current value.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResolvedFilter {
    /// The filter's name (its URL key).
    pub name: String,
    /// `select`, `multi`, `period` or `granularity`.
    pub kind: &'static str,
    /// Label.
    pub label: String,
    /// Options (select, multi, granularity).
    pub options: Vec<FilterOption>,
    /// Whether "All" (`*`) is offered.
    pub all: bool,
    /// The current value(s): one for select/granularity/period (`FROM..TO`, both included),
    /// several for multi.
    pub value: Vec<String>,
    /// For period: the presets offered, and the first and last day of the current range.
    pub presets: Vec<String>,
    /// For period: the first day (included).
    pub start: Option<String>,
    /// For period: the last day (included).
    pub end: Option<String>,
}

/// The filter state of a request, resolved.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The filters, with options.
    pub filters: Vec<ResolvedFilter>,
    /// The bound parameters.
    pub params: HashMap<String, Param>,
    /// For period filters: (start, end excluded).
    pub periods: HashMap<String, (Date, Date)>,
}

fn kind_name(k: FilterKind) -> &'static str {
    match k {
        FilterKind::Select => "select",
        FilterKind::Multi => "multi",
        FilterKind::Period => "period",
        FilterKind::Granularity => "granularity",
    }
}

/// A value typed like the column it is compared with.
fn typed(value: &str, kind: &str) -> Param {
    if kind == "number" {
        if let Ok(i) = value.parse::<i64>() {
            return Param::Int(i);
        }
        if let Ok(f) = value.parse::<f64>() {
            return Param::Float(f);
        }
    }
    if kind == "date"
        && let Ok(d) = value.parse::<Date>()
    {
        return Param::Date(d);
    }
    Param::Text(value.to_string())
}

fn json_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The range a preset names, ending at `end` (excluded).
fn preset_range(preset: &str, end: Date, min: Date) -> Result<(Date, Date), WebError> {
    let start = match preset {
        "last_7_days" => end.checked_sub(7.days()),
        "last_4_weeks" => end.checked_sub(28.days()),
        "last_8_weeks" => end.checked_sub(56.days()),
        "last_3_months" => end.checked_sub(3.months()),
        "last_6_months" => end.checked_sub(6.months()),
        "last_12_months" => end.checked_sub(12.months()),
        "all" => Ok(min),
        other => {
            return Err(WebError::Invalid(format!(
                "unknown period `{other}`: use FROM..TO (dates) or one of {}",
                affluent_config::PERIOD_PRESETS.join(", ")
            )));
        }
    }
    .map_err(|e| WebError::Invalid(format!("period out of range: {e}")))?;
    Ok((start, end))
}

/// Parses `FROM..TO` (both days included) into (start, end excluded).
fn custom_range(text: &str) -> Result<(Date, Date), WebError> {
    let bad = || {
        WebError::Invalid(format!(
            "invalid period `{text}`: use FROM..TO with dates such as 2024-05-01..2024-05-31, or a preset"
        ))
    };
    let (from, to) = text.split_once("..").ok_or_else(bad)?;
    let from: Date = from.trim().parse().map_err(|_| bad())?;
    let to: Date = to.trim().parse().map_err(|_| bad())?;
    if to < from {
        return Err(WebError::Invalid(format!(
            "invalid period `{text}`: it ends before it starts"
        )));
    }
    Ok((from, to.tomorrow().map_err(|_| bad())?))
}

/// Resolves a page's filters from a request's query pairs.
pub async fn resolve(
    reader: &Reader,
    page: &PageConfig,
    query: &[(String, String)],
    today: Date,
    lists: HashMap<String, Param>,
) -> Result<State, WebError> {
    // The user's lists first: filters' queries may read them too.
    let mut state = State {
        params: lists,
        ..State::default()
    };
    for (name, f) in &page.filters {
        let given: Vec<&str> = query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect();
        let resolved = resolve_one(reader, name, f, &given, &mut state, today).await?;
        state.filters.push(resolved);
    }
    Ok(state)
}

async fn options_of(
    reader: &Reader,
    name: &str,
    f: &FilterConfig,
    params: &HashMap<String, Param>,
) -> Result<(Vec<FilterOption>, &'static str), WebError> {
    if let Some(sql) = &f.sql {
        let rows = reader
            .rows_cached(sql, params)
            .await
            .map_err(WebError::query(format!("filter `{name}`")))?;
        let kind = rows.columns.first().map(|c| c.kind).unwrap_or("text");
        let options = rows
            .rows
            .iter()
            .filter(|r| !r.first().is_none_or(|v| v.is_null()))
            .map(|r| {
                let value = json_text(&r[0]);
                let label = r.get(1).map(json_text).unwrap_or_else(|| value.clone());
                FilterOption { value, label }
            })
            .collect();
        Ok((options, kind))
    } else {
        Ok((
            f.options
                .iter()
                .map(|o| FilterOption {
                    value: o.clone(),
                    label: o.clone(),
                })
                .collect(),
            "text",
        ))
    }
}

async fn resolve_one(
    reader: &Reader,
    name: &str,
    f: &FilterConfig,
    given: &[&str],
    state: &mut State,
    today: Date,
) -> Result<ResolvedFilter, WebError> {
    let label = f.label.clone().unwrap_or_else(|| name.replace('_', " "));
    let mut out = ResolvedFilter {
        name: name.to_string(),
        kind: kind_name(f.kind),
        label,
        options: Vec::new(),
        all: f.all,
        value: Vec::new(),
        presets: Vec::new(),
        start: None,
        end: None,
    };
    match f.kind {
        FilterKind::Select => {
            let (options, kind) = options_of(reader, name, f, &state.params).await?;
            // A value no longer offered (another agency was picked) falls back to the default.
            let offered =
                |v: &str| v == ALL || f.sql.is_none() || options.iter().any(|o| o.value == v);
            let value = match given
                .first()
                .copied()
                .filter(|v| !v.is_empty() && offered(v))
            {
                Some(v) => v.to_string(),
                None => f
                    .default
                    .clone()
                    .or_else(|| (f.all).then(|| ALL.to_string()))
                    .or_else(|| options.first().map(|o| o.value.clone()))
                    .unwrap_or_default(),
            };
            let param = if value == ALL {
                if !f.all {
                    return Err(WebError::Invalid(format!(
                        "filter `{name}` does not offer All"
                    )));
                }
                Param::Null
            } else {
                typed(&value, kind)
            };
            state.params.insert(name.to_string(), param);
            out.options = options;
            out.value = vec![value];
        }
        FilterKind::Multi => {
            let (options, _) = options_of(reader, name, f, &state.params).await?;
            let values: Vec<String> = if given.is_empty() {
                f.default
                    .as_deref()
                    .map(|d| {
                        d.split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                given
                    .iter()
                    .filter(|v| !v.is_empty())
                    .map(|v| v.to_string())
                    .collect()
            };
            state
                .params
                .insert(name.to_string(), Param::List(values.clone()));
            out.options = options;
            out.value = values;
        }
        FilterKind::Granularity => {
            let options: Vec<String> = if f.options.is_empty() {
                ["day", "week", "month"].map(String::from).to_vec()
            } else {
                f.options.clone()
            };
            let value = given
                .first()
                .map(|v| v.to_string())
                .or_else(|| f.default.clone())
                .unwrap_or_else(|| options[0].clone());
            if !options.contains(&value) {
                return Err(WebError::Invalid(format!(
                    "filter `{name}`: unknown granularity `{value}` (known: {})",
                    options.join(", ")
                )));
            }
            state
                .params
                .insert(name.to_string(), Param::Text(value.clone()));
            out.options = options
                .iter()
                .map(|o| FilterOption {
                    value: o.clone(),
                    label: o.clone(),
                })
                .collect();
            out.value = vec![value];
        }
        FilterKind::Period => {
            let end = match &f.anchor_sql {
                Some(sql) => {
                    let rows = reader
                        .rows_cached(sql, &state.params)
                        .await
                        .map_err(WebError::query(format!("filter `{name}`")))?;
                    rows.rows
                        .first()
                        .and_then(|r| r.first())
                        .map(json_text)
                        .and_then(|t| t.get(..10).and_then(|d| d.parse::<Date>().ok()))
                        .and_then(|d| d.tomorrow().ok())
                        .unwrap_or(today.tomorrow().unwrap_or(today))
                }
                None => today.tomorrow().unwrap_or(today),
            };
            let min = f
                .min_date
                .as_deref()
                .and_then(|d| d.parse().ok())
                .unwrap_or(jiff::civil::date(1970, 1, 1));
            let value = given
                .first()
                .map(|v| v.to_string())
                .or_else(|| f.default.clone())
                .unwrap_or_else(|| "last_4_weeks".to_string());
            let (start, end_excl) = if value.contains("..") {
                custom_range(&value)?
            } else {
                preset_range(&value, end, min)?
            };
            state
                .params
                .insert(format!("{name}_start"), Param::Date(start));
            state
                .params
                .insert(format!("{name}_end"), Param::Date(end_excl));
            state.periods.insert(name.to_string(), (start, end_excl));
            out.presets = affluent_config::PERIOD_PRESETS
                .iter()
                .map(|p| p.to_string())
                .collect();
            out.start = Some(start.to_string());
            out.end = Some(end_excl.yesterday().unwrap_or(end_excl).to_string());
            out.value = vec![value];
        }
    }
    Ok(out)
}

/// A KPI's comparison with the previous period.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Comparison {
    /// The period compared with, first and last day.
    pub previous_start: String,
    /// Last day of the previous period.
    pub previous_end: String,
    /// The value over the previous period.
    #[schema(value_type = Value)]
    pub previous: serde_json::Value,
    /// Change in percent, when both values are numbers and the previous one is not zero.
    pub change_pct: Option<f64>,
}

/// What a panel shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PanelData {
    /// The panel's name.
    pub name: String,
    /// The panel's kind.
    #[schema(value_type = String)]
    pub kind: PanelKind,
    /// Title.
    pub title: String,
    /// Columns of the rows.
    #[schema(value_type = Vec<Object>)]
    pub columns: Vec<ColumnInfo>,
    /// Rows, in column order.
    #[schema(value_type = Vec<Vec<Value>>)]
    pub rows: Vec<Vec<serde_json::Value>>,
    /// For tables: rows in all pages.
    pub total: Option<u64>,
    /// For KPIs: the previous period.
    pub compare: Option<Comparison>,
    /// Text of a text panel.
    pub text: Option<String>,
    /// For `alerts`: the firings, the user's unseen ones first.
    pub firings: Option<crate::alerts::FiringList>,
}

/// Quotes an identifier for SQL.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn strip_semicolon(sql: &str) -> &str {
    sql.trim().trim_end_matches(';').trim_end()
}

/// How a table panel is sorted and paged.
#[derive(Debug, Clone, Default)]
pub struct TableView {
    /// The column to sort on.
    pub sort: Option<String>,
    /// Descending.
    pub desc: bool,
    /// First row.
    pub offset: u64,
    /// Rows (`None`: the panel's limit; export: all).
    pub limit: Option<u64>,
}

/// The query a panel runs for a view (tables sorted and paged, top-N cut).
pub async fn panel_sql(
    reader: &Reader,
    name: &str,
    panel: &PanelConfig,
    params: &HashMap<String, Param>,
    view: &TableView,
) -> Result<String, WebError> {
    let sql = strip_semicolon(panel.sql.as_deref().unwrap_or_default()).to_string();
    Ok(match panel.kind {
        PanelKind::Table | PanelKind::Cards => match &view.sort {
            // Sorted by the user: the engine sorts.
            Some(sort) => {
                let columns = reader
                    .columns(&sql, params)
                    .await
                    .map_err(WebError::query(format!("panel `{name}`")))?;
                if !columns.iter().any(|c| &c.name == sort) {
                    return Err(WebError::Invalid(format!(
                        "cannot sort on `{sort}`: the columns are {}",
                        columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                format!(
                    "SELECT * FROM ({sql}) AS t ORDER BY {} {} NULLS LAST",
                    quote_ident(sort),
                    if view.desc { "DESC" } else { "ASC" }
                )
            }
            // Otherwise the query's own order, which a subquery would not keep.
            None => sql,
        },
        PanelKind::Top => {
            let columns = reader
                .columns(&sql, params)
                .await
                .map_err(WebError::query(format!("panel `{name}`")))?;
            let value = columns
                .iter()
                .skip(1)
                .find(|c| c.kind == "number")
                .or(columns.get(1))
                .ok_or_else(|| {
                    WebError::Invalid(
                        "a top panel needs two columns: a label and a value".to_string(),
                    )
                })?;
            format!(
                "SELECT * FROM ({sql}) AS t ORDER BY {} DESC NULLS LAST LIMIT {}",
                quote_ident(&value.name),
                panel.limit.unwrap_or(10)
            )
        }
        _ => sql,
    })
}

/// Runs a panel for a resolved state.
pub async fn run_panel(
    reader: &Reader,
    page: &PageConfig,
    name: &str,
    panel: &PanelConfig,
    state: &State,
    view: &TableView,
) -> Result<PanelData, WebError> {
    let title = panel
        .title
        .clone()
        .unwrap_or_else(|| name.replace('_', " "));
    let mut data = PanelData {
        name: name.to_string(),
        kind: panel.kind,
        title,
        columns: Vec::new(),
        rows: Vec::new(),
        total: None,
        compare: None,
        text: None,
        firings: None,
    };
    if panel.kind == PanelKind::Text {
        data.text = panel.text.clone();
        return Ok(data);
    }
    let sql = panel_sql(reader, name, panel, &state.params, view).await?;
    let query_err = || WebError::query(format!("panel `{name}`"));
    if matches!(panel.kind, PanelKind::Table | PanelKind::Cards) {
        // Pages are cut from the ordered result, so the order is the query's or the user's.
        let default = if panel.kind == PanelKind::Cards {
            30
        } else {
            25
        };
        let limit = view.limit.unwrap_or(panel.limit.unwrap_or(default) as u64) as usize;
        let (rows, total) = reader
            .rows_window(&sql, &state.params, view.offset as usize, limit)
            .await
            .map_err(query_err())?;
        data.columns = rows.columns;
        data.rows = rows.rows;
        data.total = Some(total as u64);
        return Ok(data);
    }
    let Rows { columns, rows } = reader
        .rows(&sql, &state.params)
        .await
        .map_err(query_err())?;
    data.columns = columns;
    data.rows = rows;
    let period = panel.compare.clone().or_else(|| {
        let mut periods = page
            .filters
            .iter()
            .filter(|(_, f)| f.kind == FilterKind::Period);
        match (periods.next(), periods.next()) {
            (Some((n, _)), None) => Some(n.clone()),
            _ => None,
        }
    });
    if let Some(b) = panel.baseline {
        // The history reaches back before the period, so the first points have a baseline.
        let history = match period
            .as_ref()
            .and_then(|p| state.periods.get(p).map(|r| (p, r)))
        {
            Some((p, (start, _))) => {
                let back = start
                    .checked_sub(b.reach())
                    .map_err(|e| WebError::Invalid(format!("baseline out of range: {e}")))?;
                let mut params = state.params.clone();
                params.insert(format!("{p}_start"), Param::Date(back));
                Some(reader.rows(&sql, &params).await.map_err(query_err())?.rows)
            }
            None => None,
        };
        add_baseline(&mut data, panel, b, history.as_deref());
    }
    if panel.kind == PanelKind::Kpi {
        // "all" has no previous period.
        let everything = |p: &String| {
            state
                .filters
                .iter()
                .any(|f| &f.name == p && f.value.first().is_some_and(|v| v == "all"))
        };
        if let Some(period) = period.filter(|p| !everything(p))
            && let Some((start, end)) = state.periods.get(&period)
        {
            let len = start
                .until(*end)
                .map_err(|e| WebError::Invalid(e.to_string()))?;
            let prev_start = start
                .checked_sub(len)
                .map_err(|e| WebError::Invalid(e.to_string()))?;
            let mut params = state.params.clone();
            params.insert(format!("{period}_start"), Param::Date(prev_start));
            params.insert(format!("{period}_end"), Param::Date(*start));
            let prev = reader.rows(&sql, &params).await.map_err(query_err())?;
            let previous = prev
                .rows
                .first()
                .and_then(|r| r.first())
                .cloned()
                .unwrap_or(serde_json::Value::Null);
            let current = data.rows.first().and_then(|r| r.first());
            let change_pct = match (current.and_then(|v| v.as_f64()), previous.as_f64()) {
                (Some(c), Some(p)) if p != 0.0 => Some((c / p - 1.0) * 100.0),
                _ => None,
            };
            data.compare = Some(Comparison {
                previous_start: prev_start.to_string(),
                previous_end: start.yesterday().unwrap_or(*start).to_string(),
                previous,
                change_pct,
            });
        }
    }
    Ok(data)
}

/// Adds, after each series column, `NAME (baseline)`: at each point, the mean of the same
/// series at the same weekday and time of the previous weeks (or hour of the previous days),
/// looked up in `history` (the same query over a longer period) or in the rows themselves.
fn add_baseline(
    data: &mut PanelData,
    panel: &PanelConfig,
    b: affluent_config::schema::Baseline,
    history: Option<&[Vec<serde_json::Value>]>,
) {
    let find = |name: &str| data.columns.iter().position(|c| c.name == name);
    let x = panel.x.as_deref().and_then(find).unwrap_or(0);
    let series = panel.series.as_deref().and_then(find);
    let ys: Vec<usize> = if panel.y.is_empty() {
        (0..data.columns.len())
            .filter(|&i| i != x && Some(i) != series && data.columns[i].kind == "number")
            .collect()
    } else {
        panel.y.iter().filter_map(|y| find(y)).collect()
    };
    let time = |row: &[serde_json::Value]| {
        row.get(x)
            .and_then(|v| v.as_str())
            .and_then(affluent_core::civil_time)
    };
    let key = |row: &[serde_json::Value]| series.map(|s| json_text(&row[s])).unwrap_or_default();
    let history = history.unwrap_or(&data.rows);
    // (series, y, slot) → (sum, count)
    let mut index: HashMap<(String, usize, jiff::civil::DateTime), (f64, u32)> = HashMap::new();
    for row in history {
        let Some(t) = time(row) else { continue };
        for &y in &ys {
            if let Some(v) = row.get(y).and_then(|v| v.as_f64()) {
                let e = index.entry((key(row), y, b.slot(t))).or_default();
                e.0 += v;
                e.1 += 1;
            }
        }
    }
    let baselines: Vec<Vec<serde_json::Value>> = data
        .rows
        .iter()
        .map(|row| {
            ys.iter()
                .map(|&y| {
                    let Some(t) = time(row) else {
                        return serde_json::Value::Null;
                    };
                    let (mut sum, mut n) = (0.0, 0u32);
                    for slot in b.earlier(t) {
                        if let Some((s, c)) = index.get(&(key(row), y, slot)) {
                            sum += s;
                            n += c;
                        }
                    }
                    if n == 0 {
                        serde_json::Value::Null
                    } else {
                        serde_json::json!(sum / f64::from(n))
                    }
                })
                .collect()
        })
        .collect();
    for &y in &ys {
        let name = format!("{} (baseline)", data.columns[y].name);
        data.columns.push(ColumnInfo {
            name,
            kind: "number",
        });
    }
    for (row, extra) in data.rows.iter_mut().zip(baselines) {
        row.extend(extra);
    }
}

/// The tables and models a query reads, by name (for live refresh).
pub fn tables_of(sql: &str, known: &[String]) -> Vec<String> {
    let words: std::collections::BTreeSet<String> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .map(|w| w.to_ascii_lowercase())
        .collect();
    known
        .iter()
        .filter(|k| words.contains(&k.to_ascii_lowercase()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_end_at_the_anchor() {
        let end = jiff::civil::date(2024, 6, 1);
        let (s, e) = preset_range("last_4_weeks", end, end).unwrap();
        assert_eq!(
            (s.to_string(), e.to_string()),
            ("2024-05-04".into(), "2024-06-01".into())
        );
        let (s, _) = preset_range("last_3_months", end, end).unwrap();
        assert_eq!(s.to_string(), "2024-03-01");
        assert!(preset_range("last_week", end, end).is_err());
    }

    #[test]
    fn custom_ranges_include_both_days() {
        let (s, e) = custom_range("2024-05-01..2024-05-31").unwrap();
        assert_eq!(
            (s.to_string(), e.to_string()),
            ("2024-05-01".into(), "2024-06-01".into())
        );
        assert!(custom_range("2024-05-31..2024-05-01").is_err());
        assert!(custom_range("yesterday").is_err());
        assert!(custom_range("2024-13-01..2024-05-01").is_err());
    }

    #[test]
    fn tables_are_found_by_word() {
        let known = vec![
            "footfall_daily".to_string(),
            "agencies".to_string(),
            "daily".to_string(),
        ];
        assert_eq!(
            tables_of(
                "SELECT * FROM footfall_daily d JOIN agencies a USING (x)",
                &known
            ),
            vec!["footfall_daily".to_string(), "agencies".to_string()]
        );
    }
}

//! Paginators, as dlt names them: each takes the current request and the page just received and
//! says how to ask for the next one, or that there is none.

use affluent_config::schema::{JsonPathExpr, PaginatorConfig};
use affluent_core::JsonPath;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::records::Page;

/// The query of the request being paged: URL without query, and ordered parameters.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// URL (a `json_link`/`header_link` next URL carries its own query).
    pub url: url::Url,
    /// Query parameters.
    pub params: Vec<(String, String)>,
}

impl PageRequest {
    /// Sets a parameter, replacing any of the same name.
    pub fn set(&mut self, name: &str, value: String) {
        self.params.retain(|(k, _)| k != name);
        self.params.push((name.to_string(), value));
    }

    /// The URL with its parameters.
    pub fn full_url(&self) -> url::Url {
        let mut url = self.url.clone();
        if !self.params.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &self.params {
                pairs.append_pair(k, v);
            }
        }
        url
    }
}

/// A running paginator.
#[derive(Debug)]
pub struct Paginator {
    config: PaginatorConfig,
    page: i64,
    offset: u64,
    /// Why paging stopped short of what the response announced, if it did.
    capped: Option<String>,
}

/// A configured path, or its default.
fn path(p: &Option<JsonPathExpr>, default: &[&str]) -> JsonPath {
    p.as_ref()
        .map_or_else(|| JsonPath::keys(default), |p| p.path().clone())
}

fn as_u64(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Paginator {
    /// Starts a paginator and sets the first page's parameters.
    pub fn start(config: PaginatorConfig, request: &mut PageRequest) -> Self {
        let mut p = Self {
            config,
            page: 0,
            offset: 0,
            capped: None,
        };
        match &p.config {
            PaginatorConfig::PageNumber {
                page_param,
                base_page,
                ..
            } => {
                p.page = base_page.unwrap_or(0);
                request.set(page_param.as_deref().unwrap_or("page"), p.page.to_string());
            }
            PaginatorConfig::Offset {
                limit,
                offset,
                offset_param,
                limit_param,
                ..
            } => {
                p.offset = offset.unwrap_or(0);
                request.set(
                    offset_param.as_deref().unwrap_or("offset"),
                    p.offset.to_string(),
                );
                request.set(limit_param.as_deref().unwrap_or("limit"), limit.to_string());
            }
            _ => {}
        }
        p
    }

    /// Why paging stopped before the end the response announced (`maximum_offset`,
    /// `maximum_page`), if it did: records were left behind.
    pub fn capped(&self) -> Option<&str> {
        self.capped.as_deref()
    }

    /// Moves `request` to the next page; `false` when there is none.
    pub fn advance(
        &mut self,
        request: &mut PageRequest,
        doc: &Page<'_>,
        headers: &HeaderMap,
        records: usize,
    ) -> bool {
        match &self.config {
            PaginatorConfig::SinglePage => false,
            PaginatorConfig::PageNumber {
                page_param,
                base_page,
                total_path,
                maximum_page,
                stop_after_empty_page,
            } => {
                if records == 0 && stop_after_empty_page.unwrap_or(true) {
                    return false;
                }
                let base = base_page.unwrap_or(0);
                if let Some(total) = total_path
                    .as_ref()
                    .and_then(|p| as_u64(doc.get(p.path()).as_ref()))
                    && self.page - base + 1 >= total as i64
                {
                    return false;
                }
                if let Some(max) = maximum_page.filter(|max| self.page >= *max) {
                    let announced = total_path
                        .as_ref()
                        .and_then(|p| as_u64(doc.get(p.path()).as_ref()));
                    self.capped = Some(match announced {
                        Some(total) => format!(
                            "stopped at maximum_page = {max} although {total} pages are announced: the pages after it were not fetched"
                        ),
                        None => format!(
                            "stopped at maximum_page = {max}: any page after it was not fetched"
                        ),
                    });
                    return false;
                }
                self.page += 1;
                request.set(
                    page_param.as_deref().unwrap_or("page"),
                    self.page.to_string(),
                );
                true
            }
            PaginatorConfig::Offset {
                limit,
                offset_param,
                total_path,
                maximum_offset,
                stop_after_empty_page,
                ..
            } => {
                if records == 0 && stop_after_empty_page.unwrap_or(true) {
                    return false;
                }
                let next = self.offset + limit;
                let total = total_path
                    .as_ref()
                    .and_then(|p| as_u64(doc.get(p.path()).as_ref()));
                match total {
                    Some(total) if next >= total => return false,
                    None if (records as u64) < *limit => return false,
                    _ => {}
                }
                if let Some(max) = maximum_offset.filter(|max| next >= *max) {
                    // Opendatasoft's `/records` stops at offset + limit = 10,000: what lies
                    // beyond needs its `/exports` endpoint or narrower requests.
                    self.capped = Some(match total {
                        Some(total) => format!(
                            "stopped at maximum_offset = {max} although {total} records are announced: {} records were not fetched; use the API's export endpoint or split the requests",
                            total.saturating_sub(next)
                        ),
                        None => format!(
                            "stopped at maximum_offset = {max}: any record after it was not fetched"
                        ),
                    });
                    return false;
                }
                self.offset = next;
                request.set(
                    offset_param.as_deref().unwrap_or("offset"),
                    next.to_string(),
                );
                true
            }
            PaginatorConfig::Cursor {
                cursor_path,
                cursor_param,
            } => match doc.get(&path(cursor_path, &["cursors", "next"])) {
                Some(Value::String(s)) if !s.is_empty() => {
                    request.set(cursor_param.as_deref().unwrap_or("cursor"), s);
                    true
                }
                Some(Value::Number(n)) => {
                    request.set(cursor_param.as_deref().unwrap_or("cursor"), n.to_string());
                    true
                }
                _ => false,
            },
            PaginatorConfig::JsonLink { next_url_path } => {
                match doc
                    .get(&path(next_url_path, &["next"]))
                    .and_then(|v| v.as_str().map(str::to_string))
                {
                    Some(next) if !next.is_empty() => follow(request, &next),
                    _ => false,
                }
            }
            PaginatorConfig::HeaderLink { links_next_key } => {
                let rel = links_next_key.as_deref().unwrap_or("next");
                let next = headers
                    .get_all(reqwest::header::LINK)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(|v| link_with_rel(v, rel));
                match next {
                    Some(next) => follow(request, &next),
                    None => false,
                }
            }
        }
    }
}

fn follow(request: &mut PageRequest, next: &str) -> bool {
    match request.full_url().join(next) {
        Ok(url) => {
            request.url = url;
            request.params.clear();
            true
        }
        Err(_) => false,
    }
}

/// The target of the link with relation `rel` in an RFC 8288 `Link` header value.
pub fn link_with_rel(header: &str, rel: &str) -> Option<String> {
    for link in header.split(',') {
        let mut parts = link.split(';');
        let target = parts.next()?.trim();
        let target = target.strip_prefix('<')?.strip_suffix('>')?;
        for param in parts {
            let param = param.trim();
            if let Some(value) = param.strip_prefix("rel=") {
                let value = value.trim_matches('"');
                if value
                    .split_whitespace()
                    .any(|r| r.eq_ignore_ascii_case(rel))
                {
                    return Some(target.to_string());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        let h =
            r#"<https://api.x/items?page=2>; rel="next", <https://api.x/items?page=9>; rel="last""#;
        assert_eq!(
            link_with_rel(h, "next").as_deref(),
            Some("https://api.x/items?page=2")
        );
        assert_eq!(
            link_with_rel(h, "last").as_deref(),
            Some("https://api.x/items?page=9")
        );
        assert_eq!(link_with_rel(h, "prev"), None);
    }
}

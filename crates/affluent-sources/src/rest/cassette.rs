//! Recorded responses ("cassettes"): what `affluent record NAME` writes from a live run, and
//! what a REST source answers from when it replays (`cassette`, `replay` in its config).
//!
//! A replay goes through the same run as a live one (templates, fan-out, pagination, data
//! selector, landing), only the answer to each request comes from the file. A request matches a
//! recorded one when the method, the URL's path, the JSON body and the query parameters are
//! equal (not the host: `client.base_url` may come from the environment), leaving out secrets (a recorded value `***`) and, when no recording
//! matches exactly, the parameters whose value comes from the data interval
//! (`startDateTime = "{interval.start...}"`): a cassette recorded once replays for any interval,
//! and the same interval's recording when it has one.
//!
//! The file is JSON, written with secrets scrubbed (the URL through the redactor, the headers
//! kept with a landed body, the body as landed):
//! `{"affluent_cassette": 1, "source", "recorded_at", "interactions": [{"method", "url",
//! "request_body"?, "status", "headers", "body" | "body_text"}]}`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use jiff::Timestamp;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::Response;
use crate::error::SourceError;

/// The format version written in each cassette.
const FORMAT: u32 = 1;

/// What a secret's value is replaced by in a recorded URL.
const MASK: &str = "***";

/// One recorded request and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// `GET` or `POST`.
    pub method: String,
    /// The URL with its query, secrets scrubbed.
    pub url: String,
    /// The JSON body sent, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<Value>,
    /// The status answered (2xx).
    pub status: u16,
    /// The headers kept with a landed body (`content-type`, `link`, ...).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body, when it is JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// The body, when it is not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
}

/// A cassette file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CassetteFile {
    /// The format version (1).
    pub affluent_cassette: u32,
    /// The source it was recorded from.
    pub source: String,
    /// When it was last written.
    pub recorded_at: String,
    /// A line for the reader: where the responses come from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Requests and answers, in the order they were made.
    pub interactions: Vec<Interaction>,
}

/// A request as compared with recordings.
#[derive(Debug, PartialEq, Eq)]
struct Key {
    method: String,
    /// The path: a cassette belongs to one source, and the host is not compared (a cassette
    /// recorded against a local server or a mirror replays for the real API).
    base: String,
    /// Query parameters, sorted, secrets left out.
    params: Vec<(String, String)>,
    body: Option<String>,
}

impl Key {
    fn new(method: &str, url: &str, body: Option<&Value>) -> Result<Self, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        let mut params: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        params.sort();
        Ok(Self {
            method: method.to_ascii_uppercase(),
            base: parsed.path().to_string(),
            params,
            body: body.map(Value::to_string),
        })
    }

    /// Whether `self` (a request) is `recorded`, leaving out the parameters in `free` and those
    /// masked in either.
    fn matches(&self, recorded: &Key, free: &BTreeSet<String>) -> bool {
        if self.method != recorded.method
            || self.base != recorded.base
            || self.body != recorded.body
        {
            return false;
        }
        let masked: BTreeSet<&str> = recorded
            .params
            .iter()
            .chain(&self.params)
            .filter(|(_, v)| v == MASK)
            .map(|(k, _)| k.as_str())
            .collect();
        let kept = |params: &[(String, String)]| -> Vec<(String, String)> {
            params
                .iter()
                .filter(|(k, _)| !masked.contains(k.as_str()) && !free.contains(k))
                .cloned()
                .collect()
        };
        kept(&self.params) == kept(&recorded.params)
    }
}

/// A cassette read for replay.
#[derive(Debug)]
pub struct Cassette {
    path: PathBuf,
    interactions: Vec<(Key, Interaction)>,
}

impl Cassette {
    /// Reads a cassette.
    pub fn open(path: &Path, source: &str) -> Result<Self, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            SourceError::Plan(if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "source `{source}` replays {} but it does not exist: record it with `affluent record {source}` (with the source's keys set), or set `replay = \"never\"`",
                    path.display()
                )
            } else {
                format!("cannot read the cassette {}: {e}", path.display())
            })
        })?;
        let file: CassetteFile = serde_json::from_str(&text).map_err(|e| {
            SourceError::Plan(format!(
                "{}:{}:{}: not a cassette: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        })?;
        if file.affluent_cassette != FORMAT {
            return Err(SourceError::Plan(format!(
                "{}: cassette format {} (this affluent reads {FORMAT})",
                path.display(),
                file.affluent_cassette
            )));
        }
        let interactions = file
            .interactions
            .into_iter()
            .enumerate()
            .map(|(i, it)| {
                let key = Key::new(&it.method, &it.url, it.request_body.as_ref()).map_err(|e| {
                    SourceError::Plan(format!("{}: interaction {i}: {e}", path.display()))
                })?;
                Ok((key, it))
            })
            .collect::<Result<_, SourceError>>()?;
        Ok(Self {
            path: path.to_path_buf(),
            interactions,
        })
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many interactions it holds.
    pub fn len(&self) -> usize {
        self.interactions.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.interactions.is_empty()
    }

    /// The recorded answer to a request (`shown_url`: the URL as landed, secrets scrubbed).
    /// `free` names the parameters that may differ (they come from the data interval).
    pub(crate) fn answer(
        &self,
        method: &str,
        shown_url: &str,
        body: Option<&Value>,
        free: &BTreeSet<String>,
    ) -> Result<Response, SourceError> {
        let key = Key::new(method, shown_url, body).map_err(SourceError::Plan)?;
        let none = BTreeSet::new();
        let found = self
            .interactions
            .iter()
            .find(|(k, _)| key.matches(k, &none))
            .or_else(|| self.interactions.iter().find(|(k, _)| key.matches(k, free)));
        let Some((_, it)) = found else {
            return Err(SourceError::Plan(format!(
                "{} has no recording of {method} {shown_url}: record it again with `affluent record` (its parameters, fan-out or pages changed since)",
                self.path.display()
            )));
        };
        let body = match (&it.body, &it.body_text) {
            (Some(v), _) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
            (None, Some(t)) => Bytes::from(t.clone().into_bytes()),
            (None, None) => Bytes::new(),
        };
        let mut headers = HeaderMap::new();
        for (k, v) in &it.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) {
                headers.insert(name, value);
            }
        }
        Ok(Response {
            status: it.status,
            headers,
            body,
            received_at: Timestamp::now(),
        })
    }
}

/// What a recording run collects, written to a cassette at the end ([`Recorder::save`]).
#[derive(Debug, Default)]
pub struct Recorder {
    interactions: Mutex<Vec<Interaction>>,
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one answer (everything already scrubbed of secrets).
    pub(crate) fn record(
        &self,
        method: &str,
        shown_url: &str,
        request_body: Option<&Value>,
        status: u16,
        headers: BTreeMap<String, String>,
        body: &[u8],
    ) {
        let (body, body_text) = match serde_json::from_slice::<Value>(body) {
            Ok(v) => (Some(v), None),
            Err(_) => (None, Some(String::from_utf8_lossy(body).into_owned())),
        };
        self.interactions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Interaction {
                method: method.to_string(),
                url: shown_url.to_string(),
                request_body: request_body.cloned(),
                status,
                headers,
                body,
                body_text,
            });
    }

    /// How many answers it holds.
    pub fn len(&self) -> usize {
        self.interactions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the cassette of `source` to `path` (atomically): the answers recorded, after the
    /// ones already in the file when `append` (a request recorded again replaces its old
    /// answer). Returns how many interactions the file holds.
    pub fn save(&self, path: &Path, source: &str, append: bool) -> Result<usize, SourceError> {
        let mut interactions = if append && path.exists() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| SourceError::Plan(format!("cannot read {}: {e}", path.display())))?;
            serde_json::from_str::<CassetteFile>(&text)
                .map_err(|e| SourceError::Plan(format!("{}: not a cassette: {e}", path.display())))?
                .interactions
        } else {
            Vec::new()
        };
        let new = std::mem::take(&mut *self.interactions.lock().unwrap_or_else(|e| e.into_inner()));
        let same = |a: &Interaction, b: &Interaction| {
            a.method == b.method && a.url == b.url && a.request_body == b.request_body
        };
        interactions.retain(|old| !new.iter().any(|n| same(old, n)));
        interactions.extend(new);
        let file = CassetteFile {
            affluent_cassette: FORMAT,
            source: source.to_string(),
            recorded_at: Timestamp::now().to_string(),
            note: None,
            interactions,
        };
        let n = file.interactions.len();
        let mut text = serde_json::to_vec_pretty(&file)
            .map_err(|e| SourceError::Plan(format!("cannot encode the cassette: {e}")))?;
        text.push(b'\n');
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| SourceError::Plan(format!("cannot create {}: {e}", dir.display())))?;
        }
        affluent_landing::write_atomic(path, &text)
            .map_err(|e| SourceError::Plan(format!("cannot write {}: {e}", path.display())))?;
        Ok(n)
    }
}

//! Recorded responses ("cassettes"): what `affluent record NAME` writes from a live run, and
//! what a REST source answers from when it replays (`cassette`, `replay` in its config).
//!
//! A replay goes through the same run as a live one (templates, fan-out, pagination, data
//! selector, landing), only the answer to each request comes from the file. A request matches a
//! recorded one when the method, the URL's path (not the host: `client.base_url` may come from
//! the environment), the JSON body and the query parameters are equal, leaving out secrets (a
//! recorded value `***`) and, when no recording matches exactly, the query parameters whose
//! value follows the data interval (`startDateTime = "{interval.start...}"`, a time-grid step):
//! a cassette recorded once replays for any interval, with the same interval's recording when it
//! has one, else the newest of those that differ only there (and the run warns that it replayed
//! answers recorded for other values). The path and a JSON body are always compared.
//!
//! The file is JSON, written with secrets scrubbed (the URL through the redactor, the headers
//! kept with a landed body, the body as landed: parsed when JSON, else text, else base64; a
//! non-UTF-8 body that holds a secret is kept as its redacted text):
//! `{"affluent_cassette": 1, "source", "recorded_at", "note"?, "interactions": [{"method",
//! "url", "request_body"?, "status", "headers", "body" | "body_text" | "body_base64"}]}`.
//! A process reads it once: one that runs on sees a cassette recorded since when it restarts.

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
    /// The body, when it is text but not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    /// The body, when it is not UTF-8 text, in base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
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
        let bad = |e: serde_json::Error| {
            SourceError::Plan(format!(
                "{}:{}:{}: not a cassette: {e}",
                path.display(),
                e.line(),
                e.column()
            ))
        };
        // The version first: a newer format is said to be one, not a list of unknown fields.
        let value: Value = serde_json::from_str(&text).map_err(bad)?;
        match value.get("affluent_cassette").and_then(Value::as_u64) {
            Some(v) if v == u64::from(FORMAT) => {}
            Some(v) => {
                return Err(SourceError::Plan(format!(
                    "{}: cassette format {v}, this affluent reads format {FORMAT}: use the affluent that wrote it, or record it again with `affluent record {source}`",
                    path.display()
                )));
            }
            None => {
                return Err(SourceError::Plan(format!(
                    "{}: not a cassette (no `affluent_cassette` format number): record one with `affluent record {source}`",
                    path.display()
                )));
            }
        }
        let file: CassetteFile = serde_json::from_value(value)
            .map_err(|e| SourceError::Plan(format!("{}: not a cassette: {e}", path.display())))?;
        if file.source != source {
            return Err(SourceError::Plan(format!(
                "{} holds the answers of source `{}`, not `{source}`: point `cassette` at this source's file, or record it with `affluent record {source}`",
                path.display(),
                file.source
            )));
        }
        let interactions = file
            .interactions
            .into_iter()
            .enumerate()
            .map(|(i, it)| {
                let at = |e: String| {
                    SourceError::Plan(format!("{}: interaction {i}: {e}", path.display()))
                };
                if !(200..300).contains(&it.status) {
                    return Err(at(format!(
                        "status {}: a cassette holds answers (2xx); an error answer is never data",
                        it.status
                    )));
                }
                for (k, v) in &it.headers {
                    if HeaderName::from_bytes(k.as_bytes()).is_err()
                        || HeaderValue::from_str(v).is_err()
                    {
                        return Err(at(format!("header {k:?}: not a valid HTTP header")));
                    }
                }
                let key = Key::new(&it.method, &it.url, it.request_body.as_ref()).map_err(at)?;
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

    /// The recorded answer to a request (`shown_url`: the URL as landed, secrets scrubbed), and
    /// whether it was recorded for other values of the parameters in `free` (those that follow
    /// the data interval): an exact recording first, else the newest that differs only there.
    pub(crate) fn answer(
        &self,
        method: &str,
        shown_url: &str,
        body: Option<&Value>,
        free: &BTreeSet<String>,
    ) -> Result<(Response, bool), SourceError> {
        let key = Key::new(method, shown_url, body).map_err(SourceError::Plan)?;
        let none = BTreeSet::new();
        let found = match self
            .interactions
            .iter()
            .find(|(k, _)| key.matches(k, &none))
        {
            Some(exact) => Some((exact, false)),
            None => self
                .interactions
                .iter()
                .rev()
                .find(|(k, _)| key.matches(k, free))
                .map(|other| (other, true)),
        };
        let Some(((_, it), elsewhere)) = found else {
            return Err(SourceError::Plan(format!(
                "{} has no recording of {method} {shown_url}: record it with `affluent record` (a recording answers a request with the same path, body and query parameters; only the query parameters that follow the interval may differ)",
                self.path.display()
            )));
        };
        let body = match (&it.body, &it.body_text, &it.body_base64) {
            (Some(v), _, _) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
            (None, Some(t), _) => Bytes::from(t.clone().into_bytes()),
            (None, None, Some(b)) => {
                use base64::Engine;
                Bytes::from(
                    base64::engine::general_purpose::STANDARD
                        .decode(b)
                        .map_err(|e| {
                            SourceError::Plan(format!(
                                "{}: the answer to {shown_url}: body_base64 is not base64: {e}",
                                self.path.display()
                            ))
                        })?,
                )
            }
            (None, None, None) => Bytes::new(),
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
        Ok((
            Response {
                status: it.status,
                headers,
                body,
                received_at: Timestamp::now(),
            },
            elsewhere,
        ))
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
        let (body, body_text, body_base64) = match serde_json::from_slice::<Value>(body) {
            Ok(v) => (Some(v), None, None),
            Err(_) => match std::str::from_utf8(body) {
                Ok(text) => (None, Some(text.to_string()), None),
                Err(_) => {
                    use base64::Engine;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
                    (None, None, Some(encoded))
                }
            },
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
                body_base64,
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
        let (mut interactions, note) = if append && path.exists() {
            let text = std::fs::read_to_string(path)
                .map_err(|e| SourceError::Plan(format!("cannot read {}: {e}", path.display())))?;
            let old = serde_json::from_str::<CassetteFile>(&text).map_err(|e| {
                SourceError::Plan(format!("{}: not a cassette: {e}", path.display()))
            })?;
            if old.source != source || old.affluent_cassette != FORMAT {
                return Err(SourceError::Plan(format!(
                    "{} holds format {} answers of source `{}`: --append adds to a cassette of `{source}` in format {FORMAT} only (record without --append to replace it)",
                    path.display(),
                    old.affluent_cassette,
                    old.source
                )));
            }
            (old.interactions, old.note)
        } else {
            (Vec::new(), None)
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
            note,
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

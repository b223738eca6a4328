//! Where tables live: under `DATA_DIR/tables` by default, in a local folder, or on an
//! S3-compatible object store (`tables_location = "s3://bucket/prefix"`, or `location` per table
//! or model), with the `AWS_*` variables of the environment or `.env` as credentials.
//!
//! The landing zone and the state (load ledgers, locks, quarantine, coverage) stay in `data_dir`
//! on a local disk: they rely on atomic renames and file locks that object stores lack.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::DeTable;

use crate::Redactor;
use crate::diagnostics::Reporter;
use crate::env::Environment;
use crate::schema::ProjectSettings;
use crate::validate::span_in;

/// Where one table's Delta files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableLocation {
    /// A folder on this machine.
    Local(PathBuf),
    /// A prefix of an S3-compatible object store: `s3://bucket/prefix/` (always ends with `/`).
    S3(url::Url),
}

impl TableLocation {
    /// Whether the table is on an object store.
    pub fn is_remote(&self) -> bool {
        matches!(self, TableLocation::S3(_))
    }
}

impl std::fmt::Display for TableLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableLocation::Local(path) => write!(f, "{}", path.display()),
            TableLocation::S3(url) => write!(f, "{url}"),
        }
    }
}

/// Where tables are kept: the root every table without its own `location` goes under, and the
/// tables and models that have one.
#[derive(Debug, Clone)]
pub struct Storage {
    /// The root: `DATA_DIR/tables`, `tables_location`'s folder, or its S3 prefix.
    pub root: TableLocation,
    /// Tables and models with their own `location`.
    pub own: BTreeMap<String, TableLocation>,
    /// The object store settings read from the environment (`AWS_*`).
    pub s3: StorageEnv,
}

impl Storage {
    /// The location of a table, model or system table.
    pub fn location(&self, name: &str) -> TableLocation {
        if let Some(own) = self.own.get(name) {
            return own.clone();
        }
        match &self.root {
            TableLocation::Local(dir) => TableLocation::Local(dir.join(name)),
            TableLocation::S3(url) => TableLocation::S3(child(url, name)),
        }
    }

    /// Whether any table is on an object store.
    pub fn any_remote(&self) -> bool {
        self.root.is_remote() || self.own.values().any(TableLocation::is_remote)
    }
}

/// `AWS_*` variables of the process environment and `.env`, keys lowercased
/// (`aws_access_key_id`, `aws_endpoint_url`, `aws_allow_http`, ...). Its `Debug` shows the keys
/// only: the values hold secrets.
#[derive(Clone, Default)]
pub struct StorageEnv(pub BTreeMap<String, String>);

impl std::fmt::Debug for StorageEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// `s3://bucket/prefix/` + `name/`.
fn child(url: &url::Url, name: &str) -> url::Url {
    let mut out = url.clone();
    let path = format!("{}{name}/", url.path());
    out.set_path(&path);
    out
}

/// Reads `tables_location` and each `location`, and the `AWS_*` variables when an object store
/// is used (their secret values registered with the redactor).
pub(crate) fn build(
    reporter: &mut Reporter<'_>,
    project_dir: &Path,
    data_dir: &Path,
    settings: &ProjectSettings,
    env: &Environment,
    redactor: &Redactor,
    root: &Spanned<DeTable<'_>>,
) -> Storage {
    if let Some(dir) = &settings.data_dir
        && let Some((scheme, _)) = dir.split_once("://")
    {
        reporter.error(
            span_in(root, &["data_dir"]),
            format!(
                "`data_dir` must be a local folder: it holds the landing zone and the state (load ledgers, locks), which need a local disk. Keep it local and put the tables on the object store with `tables_location = \"{}\"`{}",
                shown(dir),
                if scheme == "s3" {
                    ""
                } else {
                    " (only s3:// is supported)"
                }
            ),
        );
    }
    let root_location = match &settings.tables_location {
        None => TableLocation::Local(data_dir.join("tables")),
        Some(text) => parse(project_dir, text)
            .map_err(|e| reporter.error(span_in(root, &["tables_location"]), e))
            .unwrap_or_else(|()| TableLocation::Local(data_dir.join("tables"))),
    };
    let mut own = BTreeMap::new();
    let declared = settings
        .tables
        .iter()
        .map(|(n, t)| ("tables", n, t.location.as_deref()))
        .chain(
            settings
                .models
                .iter()
                .map(|(n, m)| ("models", n, m.location.as_deref())),
        );
    for (kind, name, location) in declared {
        let Some(text) = location else { continue };
        let at = span_in(root, &[kind, name, "location"]);
        match parse(project_dir, text) {
            Ok(location) => {
                own.insert(name.clone(), location);
            }
            Err(e) => reporter.error(at, e),
        }
    }
    let mut storage = Storage {
        root: root_location,
        own,
        s3: StorageEnv::default(),
    };
    overlaps(reporter, settings, &storage, root);
    if storage.any_remote() {
        for (key, value) in env.with_prefix("AWS_") {
            if crate::env::is_secret_var(key) {
                redactor.add(value);
            }
            storage
                .s3
                .0
                .insert(key.to_ascii_lowercase(), value.to_string());
        }
    }
    storage
}

/// Two tables or models in one place, or one inside the other, would share a Delta log or
/// count each other's files: each must have a place of its own.
fn overlaps(
    reporter: &mut Reporter<'_>,
    settings: &ProjectSettings,
    storage: &Storage,
    root: &Spanned<DeTable<'_>>,
) {
    let names: Vec<(&str, &String)> = settings
        .tables
        .keys()
        .map(|n| ("tables", n))
        .chain(settings.models.keys().map(|n| ("models", n)))
        .collect();
    let key = |name: &str| -> String {
        match storage.location(name) {
            TableLocation::Local(p) => {
                let mut out = PathBuf::new();
                for c in p.components() {
                    match c {
                        std::path::Component::CurDir => {}
                        std::path::Component::ParentDir => {
                            out.pop();
                        }
                        c => out.push(c),
                    }
                }
                format!("{}/", out.display())
            }
            TableLocation::S3(u) => u.to_string(),
        }
    };
    let keys: Vec<String> = names.iter().map(|(_, n)| key(n)).collect();
    for (i, (kind, name)) in names.iter().enumerate() {
        for (j, (_, other)) in names.iter().enumerate().take(i) {
            let (a, b) = (&keys[i], &keys[j]);
            if a == b || a.starts_with(b.as_str()) || b.starts_with(a.as_str()) {
                let at = span_in(root, &[kind, name, "location"])
                    .or_else(|| span_in(root, &[kind, name]));
                reporter.error(
                    at,
                    format!(
                        "`{name}` at {} and `{other}` at {} overlap: each table and model needs a location of its own, not inside another's",
                        shown(a),
                        shown(b)
                    ),
                );
            }
        }
    }
}

/// A location as written, with anything between `://` and `@` (credentials) masked.
fn shown(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}

/// A location as written: a path (relative to the project folder) or `s3://bucket/prefix`.
fn parse(project_dir: &Path, text: &str) -> Result<TableLocation, String> {
    let original = text;
    let text = &shown(original);
    let Some((scheme, _)) = text.split_once("://") else {
        if text.trim().is_empty() {
            return Err("a location cannot be empty".to_string());
        }
        return Ok(TableLocation::Local(project_dir.join(text)));
    };
    if scheme != "s3" {
        return Err(format!(
            "unsupported location `{text}`: tables go on S3-compatible object stores as `s3://bucket/prefix`, or in a local folder written as a path (no scheme)"
        ));
    }
    let mut url =
        url::Url::parse(original).map_err(|e| format!("invalid location `{text}`: {e}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "location `{text}` names no bucket: write `s3://bucket/prefix`"
        ));
    }
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(format!(
            "location `{text}` must be `s3://bucket/prefix` only: credentials and the endpoint come from the AWS_* variables of the environment or .env (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL)"
        ));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(TableLocation::S3(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_or_say_what_to_write() {
        let dir = Path::new("/p");
        assert_eq!(
            parse(dir, "s3://b/x").unwrap(),
            TableLocation::S3(url::Url::parse("s3://b/x/").unwrap())
        );
        assert_eq!(
            parse(dir, "lake").unwrap(),
            TableLocation::Local(PathBuf::from("/p/lake"))
        );
        assert!(parse(dir, "gs://b/x").unwrap_err().contains("s3://bucket"));
        assert!(parse(dir, "s3:///x").unwrap_err().contains("no bucket"));
        assert!(
            parse(dir, "s3://key:secret@b/x")
                .unwrap_err()
                .contains("AWS_")
        );
        let root = TableLocation::S3(url::Url::parse("s3://b/x/").unwrap());
        let storage = Storage {
            root,
            own: BTreeMap::new(),
            s3: StorageEnv::default(),
        };
        assert_eq!(storage.location("t").to_string(), "s3://b/x/t/");
    }
}

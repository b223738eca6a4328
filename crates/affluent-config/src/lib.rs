//! The `affluent.toml` project file: its schema ([`schema`]), `${VAR}` interpolation ([`env`](mod@env)),
//! and validation that reports every error at once with file, line and column.
//!
//! Loading is the only entry point: [`load`] returns a [`Project`] that has passed every check,
//! or [`LoadError::Invalid`] with all the problems found. Nothing downstream re-validates.
//! This crate reads the project file and `.env`, and nothing else.

mod alerts;
mod bus;
mod dashboard;
mod diagnostics;
pub mod env;
mod ml;
mod query;
mod scheduler;
pub mod schema;
mod sinks;
mod sources;
pub mod storage;
mod streams;
mod tables;
mod validate;
pub mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use affluent_core::Redactor;
use jiff::tz::TimeZone;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use dashboard::{GRANULARITIES, PERIOD_PRESETS, page_parameters, placeholders};
use diagnostics::Reporter;
pub use diagnostics::{ConfigErrors, Diagnostic};
pub use env::Environment;
use schema::{ProjectSettings, RateLimitConfig, SourceConfig};
pub use values::{ConfigDuration, ConfigTimeZone, CronExpr, JsonPathExpr, ListenAddr, StartDate};

/// The project file's name inside a project directory.
pub const PROJECT_FILE: &str = "affluent.toml";

/// A validated project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project directory.
    pub dir: PathBuf,
    /// The project file.
    pub file: PathBuf,
    /// Display name (the `name` key, else the directory name).
    pub name: String,
    /// The project's time zone.
    pub timezone: TimeZone,
    /// Where landing, state and tables live.
    pub data_dir: PathBuf,
    /// Where the tables, models and system tables live (`tables_location`, `location`).
    pub storage: storage::Storage,
    /// Rate limits per host.
    pub hosts: BTreeMap<String, RateLimitConfig>,
    /// How long landed responses are kept once loaded (`[landing] retention`).
    pub landing_retention: Option<std::time::Duration>,
    /// Sources by name.
    pub sources: BTreeMap<String, SourceConfig>,
    /// Tables by name.
    pub tables: BTreeMap<String, schema::TableConfig>,
    /// SQL models by name.
    pub models: BTreeMap<String, schema::ModelConfig>,
    /// The scheduler's state store (`state_url`); `None` is SQLite under `data_dir`.
    pub state_url: Option<String>,
    /// `[scheduler]`.
    pub scheduler: schema::SchedulerConfig,
    /// `[notify]`.
    pub notify: Option<schema::NotifyConfig>,
    /// `[dashboard]`.
    pub dashboard: schema::DashboardConfig,
    /// `[query]`: the bounds every SQL query runs within.
    pub query: schema::QueryConfig,
    /// `[compaction]`: when tables merge their small files.
    pub compaction: schema::CompactionConfig,
    /// `[pages.NAME]`, in menu order.
    pub pages: indexmap::IndexMap<String, schema::PageConfig>,
    /// `[alerts.NAME]`, checked.
    pub alerts: BTreeMap<String, schema::Alert>,
    /// `[ml.NAME]`, checked.
    pub ml: BTreeMap<String, schema::MlConfig>,
    /// `[streams.NAME]`, checked.
    pub streams: BTreeMap<String, schema::StreamConfig>,
    /// `[zones.NAME]`, checked (their files exist).
    pub zones: BTreeMap<String, schema::ZonesConfig>,
    /// `[sinks.NAME]`, checked.
    pub sinks: BTreeMap<String, schema::SinkConfig>,
    /// `[bus]`, checked.
    pub bus: schema::BusConfig,
    /// Knows every secret of the project; share it with whatever writes text out.
    pub redactor: Arc<Redactor>,
    /// Problems that do not stop the project (a secret written in clear, ...).
    pub warnings: Vec<Diagnostic>,
    /// Sources that cannot run as loaded (a `${VAR}` of theirs is unset), with every problem
    /// found in them; empty unless loaded with [`SourceEnv::Deferred`].
    pub unavailable: BTreeMap<String, ConfigErrors>,
    /// The REST sources that answer from their cassette in this process, with the file (see
    /// `replay`): decided when the project is read, or by [`Project::go_offline`].
    pub replaying: BTreeMap<String, PathBuf>,
    /// Per source, the `${VAR}`s it reads that give no value (unset, `${VAR:-}`, or empty).
    pub missing_vars: BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl Project {
    /// Every source with a cassette and `replay` other than `"never"` replays it (what
    /// `AFFLUENT_OFFLINE=1` does; `affluent demo` runs this way).
    pub fn go_offline(&mut self) {
        for (name, source) in &self.sources {
            // A source set aside for more than unset variables stays so.
            let only_unset = self
                .unavailable
                .get(name)
                .is_none_or(|e| e.0.iter().all(|d| d.message.starts_with(env::UNSET)));
            if let SourceConfig::Rest(rest) = source
                && let Some(path) = &rest.cassette
                && rest.replay != Some(schema::ReplayMode::Never)
                && only_unset
            {
                self.replaying.insert(name.clone(), self.dir.join(path));
                self.unavailable.remove(name);
            }
        }
    }

    /// Where a replaying source's answers come from, and why it replays:
    /// `cassettes/events.json (TICKETMASTER_API_KEY unset or empty)`; `None` when it calls its
    /// API.
    pub fn replay_note(&self, source: &str) -> Option<String> {
        let path = self.replaying.get(source)?;
        let shown = path.strip_prefix(&self.dir).unwrap_or(path).display();
        Some(
            match self.missing_vars.get(source).filter(|v| !v.is_empty()) {
                Some(vars) => format!(
                    "{shown} ({} unset or empty)",
                    vars.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
                None => format!("{shown} (replay on)"),
            },
        )
    }

    /// Checks that the named sources, and the sources they resolve parameters through, can run:
    /// every `${VAR}` they use is set (a source that replays its cassette needs none). The error lists every problem of all of them at once,
    /// with line and column.
    pub fn require_sources<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ConfigErrors> {
        let mut needed = std::collections::BTreeSet::new();
        let mut stack: Vec<&str> = names.into_iter().collect();
        while let Some(name) = stack.pop() {
            if !needed.insert(name) {
                continue;
            }
            if let Some(SourceConfig::Rest(rest)) = self.sources.get(name)
                && let Some((_, resolve)) = rest.resolve()
            {
                stack.push(resolve.resource.as_str());
            }
        }
        let mut errors: Vec<Diagnostic> = needed
            .iter()
            .filter_map(|n| self.unavailable.get(*n))
            .flat_map(|e| e.0.iter().cloned())
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        errors.sort_by_key(|d| (d.line, d.column));
        Err(ConfigErrors(errors))
    }

    /// [`Project::require_sources`] for every source.
    pub fn require_all_sources(&self) -> Result<(), ConfigErrors> {
        self.require_sources(self.unavailable.keys().map(String::as_str))
    }

    /// The time zone of a source: its own, else the project's.
    pub fn source_timezone(&self, source: &str) -> TimeZone {
        match self.sources.get(source) {
            Some(SourceConfig::Rest(rest)) => rest.timezone.as_ref().map(|tz| tz.get().clone()),
            _ => None,
        }
        .unwrap_or_else(|| self.timezone.clone())
    }
}

/// Parses a time as `start_date` and the command line read it: a date (local midnight in `tz`),
/// a local date-time, an RFC 3339 instant, or a duration before `now` (`"-8w"`).
pub fn parse_start(
    text: &str,
    tz: &TimeZone,
    now: jiff::Timestamp,
) -> Result<jiff::Timestamp, String> {
    text.parse::<values::StartDate>()?.resolve(tz, now)
}

/// Why a project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The project file could not be read.
    #[error("cannot read {}: {source} (create it, or pass --project DIR)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `.env` file is malformed.
    #[error("{0}")]
    Env(String),
    /// The project file has errors.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

/// What a missing `${VAR}` in a source does to the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceEnv {
    /// Every variable must be set: the load fails otherwise (`validate`, and commands that call
    /// every source).
    #[default]
    Required,
    /// A source with an unset variable loads as unavailable: its problems are kept in
    /// [`Project::unavailable`] and reported by [`Project::require_sources`] when a command
    /// calls it. Commands that only read tables or landing load projects this way.
    Deferred,
}

/// Loads and validates `DIR/affluent.toml` with the process environment and `DIR/.env`.
pub fn load(project_dir: &Path) -> Result<Project, LoadError> {
    load_for(project_dir, SourceEnv::Required)
}

/// [`load`], choosing what an unset variable in a source does.
pub fn load_for(project_dir: &Path, source_env: SourceEnv) -> Result<Project, LoadError> {
    let env = Environment::load(project_dir).map_err(LoadError::Env)?;
    load_with_env_for(project_dir, &env, source_env)
}

/// Loads and validates `DIR/affluent.toml` with the given environment.
pub fn load_with_env(project_dir: &Path, env: &Environment) -> Result<Project, LoadError> {
    load_with_env_for(project_dir, env, SourceEnv::Required)
}

/// [`load_with_env`], choosing what an unset variable in a source does.
pub fn load_with_env_for(
    project_dir: &Path,
    env: &Environment,
    source_env: SourceEnv,
) -> Result<Project, LoadError> {
    let file = project_dir.join(PROJECT_FILE);
    let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Read {
        path: file.clone(),
        source,
    })?;
    load_str_for(project_dir, &file, &text, env, source_env)
}

/// Loads a project from the text of its file (`file` is used in messages only).
pub fn load_str(
    project_dir: &Path,
    file: &Path,
    text: &str,
    env: &Environment,
) -> Result<Project, LoadError> {
    load_str_for(project_dir, file, text, env, SourceEnv::Required)
}

/// [`load_str`], choosing what an unset variable in a source does.
pub fn load_str_for(
    project_dir: &Path,
    file: &Path,
    text: &str,
    env: &Environment,
    source_env: SourceEnv,
) -> Result<Project, LoadError> {
    let mut reporter = Reporter::new(file, text);
    let redactor = Arc::new(Redactor::new());

    let (mut root, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        for e in syntax_errors {
            reporter.error(e.span(), format!("invalid TOML: {}", e.message().trim()));
        }
        return Err(LoadError::Invalid(ConfigErrors(reporter.diagnostics)));
    }
    reporter.replayable = replayable_sources(root.get_ref());
    interpolate_table(
        root.get_mut(),
        &mut Vec::new(),
        env,
        &redactor,
        &mut reporter,
        source_env,
    );
    let root_for_spans = root.clone();

    // Sources are read one by one, so that each reports its own errors.
    let sources_entry = root.get_mut().remove("sources");
    let settings: ProjectSettings = reporter.deserialize_all(root, "").unwrap_or_default();

    let mut sources = BTreeMap::new();
    let mut source_tables: BTreeMap<String, Spanned<DeTable<'_>>> = BTreeMap::new();
    if let Some(entry) = sources_entry {
        let span = entry.span();
        match entry.into_inner() {
            DeValue::Table(table) => {
                for (name, value) in table.into_iter() {
                    let name_span = name.span();
                    let name = name.into_inner().to_string();
                    let value_span = value.span();
                    let DeValue::Table(source_table) = value.into_inner() else {
                        reporter.error(
                            Some(value_span),
                            format!("[sources.{name}] must be a table with a `type` key"),
                        );
                        continue;
                    };
                    if !validate::is_identifier(&name) {
                        reporter.error(
                            Some(name_span.clone()),
                            format!(
                                "invalid source name `{name}`: use letters, digits, `_` and `-`, starting with a letter"
                            ),
                        );
                    }
                    let spanned = Spanned::new(value_span.clone(), source_table);
                    source_tables.insert(name.clone(), spanned.clone());
                    reporter.scope = Some(name.clone());
                    let config = sources::read(&mut reporter, &name, name_span, spanned);
                    reporter.scope = None;
                    if let Some(config) = config {
                        sources.insert(name, config);
                    }
                }
            }
            _ => reporter.error(
                Some(span),
                "`sources` must be a table of [sources.NAME] tables",
            ),
        }
    }

    let timezone = settings
        .timezone
        .as_ref()
        .map_or(TimeZone::UTC, |tz| tz.get().clone());

    sources::check(&mut reporter, &sources, &source_tables, &redactor);
    validate::hosts(&mut reporter, &settings.hosts, &root_for_spans);
    tables::check(
        &mut reporter,
        project_dir,
        &settings.tables,
        &settings.models,
        &sources,
        &root_for_spans,
    );
    let landing_retention = settings
        .landing
        .as_ref()
        .and_then(|l| l.retention)
        .map(ConfigDuration::get);

    scheduler::check(&mut reporter, &settings, &root_for_spans);
    dashboard::check(&mut reporter, project_dir, &settings, &root_for_spans);
    query::check(&mut reporter, &settings, &root_for_spans);
    alerts::check(&mut reporter, &settings, &root_for_spans);
    ml::check(&mut reporter, &settings, &root_for_spans);
    streams::check(&mut reporter, &settings, &root_for_spans);
    bus::check(&mut reporter, &settings.bus, &root_for_spans);
    streams::check_zones(&mut reporter, project_dir, &settings, &root_for_spans);
    sinks::check(&mut reporter, &settings, &root_for_spans, &redactor);

    let data_dir = project_dir.join(settings.data_dir.as_deref().unwrap_or(".affluent"));
    let storage = storage::build(
        &mut reporter,
        project_dir,
        &data_dir,
        &settings,
        env,
        &redactor,
        &root_for_spans,
    );

    let mut unavailable: BTreeMap<String, ConfigErrors> = std::mem::take(&mut reporter.deferred)
        .into_iter()
        .map(|(name, errors)| (name, ConfigErrors(errors)))
        .collect();
    let offline = env
        .get("AFFLUENT_OFFLINE")
        .is_some_and(|v| !matches!(v.trim(), "" | "0" | "false" | "no"));
    let mut replaying = BTreeMap::new();
    for (name, source) in &sources {
        let SourceConfig::Rest(rest) = source else {
            continue;
        };
        let Some(path) = &rest.cassette else {
            continue;
        };
        let replays = match rest.replay.unwrap_or(schema::ReplayMode::Auto) {
            schema::ReplayMode::Always => true,
            schema::ReplayMode::Never => false,
            schema::ReplayMode::Auto => {
                offline
                    || unavailable.contains_key(name)
                    || reporter
                        .missing_vars
                        .get(name)
                        .is_some_and(|v| !v.is_empty())
            }
        };
        // A source replaying needs none of its variables; any other problem of it stands.
        let only_unset = unavailable
            .get(name)
            .is_none_or(|e| e.0.iter().all(|d| d.message.starts_with(env::UNSET)));
        if replays && only_unset {
            unavailable.remove(name);
            replaying.insert(name.clone(), project_dir.join(path));
        }
    }
    // Every variable required: a source set aside only because it could replay, and that does
    // not, fails the load as any other.
    if source_env == SourceEnv::Required {
        for errors in std::mem::take(&mut unavailable).into_values() {
            reporter.diagnostics.extend(errors.0);
        }
        reporter.diagnostics.sort_by_key(|d| (d.line, d.column));
    }
    if !reporter.diagnostics.is_empty() {
        return Err(LoadError::Invalid(ConfigErrors(reporter.diagnostics)));
    }

    let name = settings.name.clone().unwrap_or_else(|| {
        std::fs::canonicalize(project_dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "affluent".to_string())
    });
    Ok(Project {
        dir: project_dir.to_path_buf(),
        file: file.to_path_buf(),
        name,
        timezone,
        data_dir,
        storage,
        hosts: settings.hosts,
        landing_retention,
        sources,
        tables: settings.tables,
        models: settings.models,
        state_url: settings.state_url,
        scheduler: settings.scheduler,
        notify: settings.notify,
        dashboard: settings.dashboard,
        query: settings.query,
        compaction: settings.compaction,
        pages: settings.pages,
        alerts: alerts::build(settings.alerts),
        ml: settings.ml,
        streams: settings.streams,
        zones: settings.zones,
        sinks: settings.sinks,
        bus: settings.bus,
        redactor,
        warnings: reporter.warnings,
        unavailable,
        replaying,
        missing_vars: std::mem::take(&mut reporter.missing_vars),
    })
}

/// The sources with a `cassette` whose `replay` is not `"never"`, read before interpolation.
fn replayable_sources(root: &DeTable<'_>) -> std::collections::BTreeSet<String> {
    let Some(DeValue::Table(sources)) = root.get("sources").map(|v| v.get_ref()) else {
        return Default::default();
    };
    sources
        .iter()
        .filter_map(|(name, value)| {
            let DeValue::Table(t) = value.get_ref() else {
                return None;
            };
            let cassette = matches!(t.get("cassette").map(|v| v.get_ref()), Some(DeValue::String(_)));
            let never = matches!(t.get("replay").map(|v| v.get_ref()), Some(DeValue::String(m)) if m == "never");
            (cassette && !never).then(|| name.get_ref().to_string())
        })
        .collect()
}

/// Interpolates `${VAR}` in every string value, registering secrets with the redactor. With
/// [`SourceEnv::Deferred`], a source whose interpolation fails is set aside (see
/// [`Reporter::defer`]) rather than failing the load.
fn interpolate_table(
    table: &mut DeTable<'_>,
    path: &mut Vec<String>,
    env: &Environment,
    redactor: &Redactor,
    reporter: &mut Reporter<'_>,
    source_env: SourceEnv,
) {
    for (key, value) in table.iter_mut() {
        path.push(key.get_ref().to_string());
        interpolate_value(value, path, env, redactor, reporter, source_env);
        path.pop();
    }
}

fn interpolate_value(
    value: &mut Spanned<DeValue<'_>>,
    path: &mut Vec<String>,
    env: &Environment,
    redactor: &Redactor,
    reporter: &mut Reporter<'_>,
    source_env: SourceEnv,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) if s.contains('$') => match env::interpolate(s, env) {
            Ok(done) => {
                if let [top, name, ..] = path.as_slice()
                    && top == "sources"
                    && !done.missing.is_empty()
                {
                    reporter
                        .missing_vars
                        .entry(name.clone())
                        .or_default()
                        .extend(done.missing.iter().cloned());
                }
                let secret_place = path
                    .iter()
                    .any(|p| matches!(p.as_str(), "auth" | "headers" | "params" | "json"));
                for (var, val) in &done.used {
                    if secret_place || env::is_secret_var(var) {
                        redactor.add(val);
                    }
                }
                *s = std::borrow::Cow::Owned(done.value);
            }
            Err(message) => {
                let source = match path.as_slice() {
                    [top, name, ..] if top == "sources" => Some(name.clone()),
                    _ => None,
                };
                if let Some(name) = &source {
                    reporter
                        .missing_vars
                        .entry(name.clone())
                        .or_default()
                        .extend(env::unset_variables(s, env));
                }
                if let Some(name) = &source
                    && (source_env == SourceEnv::Deferred || reporter.replayable.contains(name))
                {
                    reporter.defer(name);
                }
                reporter.scope = source;
                reporter.error(Some(span), message);
                reporter.scope = None;
            }
        },
        DeValue::Table(t) => interpolate_table(t, path, env, redactor, reporter, source_env),
        DeValue::Array(items) => {
            for item in items.iter_mut() {
                interpolate_value(item, path, env, redactor, reporter, source_env);
            }
        }
        _ => {}
    }
}

//! Small ML in the pipeline: `[ml.NAME]` models trained over a read-only query of the tables
//! and models.
//!
//! - `logistic_regression`: L2-regularized (scikit-learn's `C`), optional balanced class
//!   weights and standard scaling; a probability per row, measured on a held-out share
//!   (accuracy, precision, recall, ROC AUC).
//! - `knn`: each row's k most similar rows on scaled features.
//! - `isolation_forest`: an anomaly score per row (0 to 1, above 0.5 anomalous), for alerts.
//! - `forecast`: each entity's series continued by a linear trend or additive Holt-Winters,
//!   with prediction intervals; measured on the last `holdout` observations (MAE, MAPE) before
//!   it is fitted again on the whole series.
//!
//! Training version N of a model (one at a time per model, across processes) saves the fitted
//! model to `DATA_DIR/state/ml/NAME/N.json`, then replaces the table `NAME` with its
//! predictions and appends a row with its metrics to [`ML_MODELS`], both commits carrying the
//! transaction `(affluent-ml:NAME, N)`. N is one more than the version `ml_models` last
//! recorded, so a training cut short after its predictions is done again under the same N.
//! [`Ml::predict`] applies the saved model to the query's current rows without training.
//! The numerics are in [`fit`] and [`forecast`]; the solvers are argmin's.

pub mod fit;
pub mod forecast;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use affluent_config::schema::{ClassWeight, ForecastMethod, Metric, MlConfig, MlKind, TableType};
use affluent_tables::mapping::{Cell, Rows as TableRows};
use affluent_tables::system::ML_MODELS;
use affluent_tables::{ColumnInfo, Rows, TableError, Warehouse};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::fit::{Classification, IsolationForest, Logistic, Scaler};
use crate::forecast::Forecaster;

/// Errors of ML models.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// No model of that name.
    #[error("no ml model named `{name}` (known: {known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The project's models.
        known: String,
    },
    /// The query or a table failed.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The data cannot train the model (a missing column, a value that is not a number, too
    /// few rows).
    #[error("ml model `{model}`: {reason}")]
    Data {
        /// The model.
        model: String,
        /// Why, and what to do.
        reason: String,
    },
    /// The model has never been trained (predict without a saved model).
    #[error("ml model `{0}` has no saved version: train it first (`affluent ml train {0}`)")]
    Untrained(String),
    /// A saved model or the lock could not be read or written.
    #[error("ml model file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What a saved model holds: everything predictions need.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Saved {
    /// A logistic regression over scaled features.
    LogisticRegression {
        /// The features' scaling.
        scaler: Scaler,
        /// The fitted model.
        model: Logistic,
        /// The threshold of `predicted`.
        threshold: f64,
    },
    /// k nearest neighbours: the scaling (the rows are the query's, at each prediction).
    Knn {
        /// The features' scaling.
        scaler: Scaler,
        /// Neighbours per row.
        k: usize,
        /// The distance.
        metric: Metric,
    },
    /// An isolation forest.
    IsolationForest {
        /// The trees.
        forest: IsolationForest,
        /// The score from which a row is an anomaly.
        threshold: f64,
    },
    /// A forecaster per entity (its key as JSON text), with where its series ended.
    Forecast {
        /// Per entity: the fitted model, the last time (as the query gave it), and the step
        /// between observations (microseconds).
        series: BTreeMap<String, SavedSeries>,
        /// Steps ahead.
        horizon: usize,
        /// Interval coverage.
        interval: f64,
    },
}

/// One entity's forecaster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSeries {
    /// The fitted model.
    pub model: Forecaster,
    /// The first observation's time, microseconds since the epoch.
    pub first: i64,
    /// The series' step.
    pub spacing: Spacing,
    /// Steps from the first observation to the last, plus one.
    pub len: usize,
}

/// The step of a series: a fixed duration, or calendar months (a monthly series' gaps are 28 to
/// 31 days; its steps fall on the same day of each month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Spacing {
    /// Microseconds.
    Micros(i64),
    /// Calendar months (1: monthly, 3: quarterly, 12: yearly).
    Months(i64),
}

const DAY: i64 = 86_400_000_000;

fn civil(micros: i64) -> jiff::civil::DateTime {
    Timestamp::from_microsecond(micros)
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .datetime()
}

impl Spacing {
    /// The spacing of a most common gap.
    fn of(gap: i64) -> Self {
        let days = gap as f64 / DAY as f64;
        if (28.0..=31.0).contains(&days) {
            Spacing::Months(1)
        } else if (89.0..=92.0).contains(&days) {
            Spacing::Months(3)
        } else if (365.0..=366.0).contains(&days) {
            Spacing::Months(12)
        } else {
            Spacing::Micros(gap.max(1))
        }
    }

    /// The step (rounded to the nearest) of time `t` in a series starting at `first`.
    fn position(self, first: i64, t: i64) -> i64 {
        match self {
            Spacing::Micros(step) => ((t - first) as f64 / step as f64).round() as i64,
            Spacing::Months(n) => {
                let (a, b) = (civil(first), civil(t));
                let months = (i64::from(b.year()) - i64::from(a.year())) * 12
                    + i64::from(b.month())
                    - i64::from(a.month());
                let days = i64::from(b.day()) - i64::from(a.day());
                ((months as f64 + days as f64 / 30.0) / n as f64).round() as i64
            }
        }
    }

    /// The time of step `pos` of a series starting at `first`.
    fn time(self, first: i64, pos: i64) -> i64 {
        match self {
            Spacing::Micros(step) => first + step * pos,
            Spacing::Months(n) => civil(first)
                .checked_add(jiff::Span::new().months(n * pos))
                .ok()
                .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .map_or(first, |z| z.timestamp().as_microsecond()),
        }
    }
}

/// A saved model version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFile {
    /// The model's name.
    pub model: String,
    /// Its version.
    pub version: i64,
    /// When it was trained.
    pub trained_at: Timestamp,
    /// Its metrics.
    pub metrics: Metrics,
    /// The features it was trained on, in order (`predict` refuses others).
    #[serde(default)]
    pub features: Vec<String>,
    /// The fitted model.
    pub saved: Saved,
}

/// How good a version is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Rows the query gave.
    pub rows: usize,
    /// Rows (or observations) learnt from.
    pub train_rows: usize,
    /// Rows (or observations) measured on.
    pub test_rows: usize,
    /// Classification: measured on held-out rows (false: on the rows learnt from, as
    /// `test_fraction = 0` asks).
    pub held_out: bool,
    /// Classification metrics.
    pub classification: Option<Classification>,
    /// Forecasts: mean absolute error over the holdout, averaged over series.
    pub mae: Option<f64>,
    /// Forecasts: mean absolute percentage error over the holdout, averaged over series.
    pub mape: Option<f64>,
    /// Forecasts: series too short to forecast, with why.
    pub skipped: Vec<String>,
    /// Solver iterations (logistic regression).
    pub iterations: Option<u64>,
    /// Whether the solver converged (logistic regression).
    pub converged: Option<bool>,
}

/// What a training or a prediction did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// The model.
    pub model: String,
    /// Its kind.
    pub kind: MlKind,
    /// The version trained (or applied).
    pub version: i64,
    /// Prediction rows written to the table `model`.
    pub predictions: usize,
    /// Its metrics.
    pub metrics: Metrics,
    /// Whether it was trained (false: a saved version applied).
    pub trained: bool,
    /// Wall time, milliseconds.
    pub duration_ms: u64,
}

impl std::fmt::Display for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = &self.metrics;
        write!(
            f,
            "{} ({}) version {}: {} predictions from {} rows",
            self.model,
            self.kind.as_str(),
            self.version,
            self.predictions,
            m.rows
        )?;
        let pct = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{:.1} %", v * 100.0));
        if let Some(c) = &m.classification {
            write!(
                f,
                "; {} on {} {} rows: accuracy {}, precision {}, recall {}, ROC AUC {}",
                if m.held_out {
                    "measured"
                } else {
                    "measured (on the training rows)"
                },
                c.rows,
                if m.held_out { "held-out" } else { "training" },
                pct(Some(c.accuracy)),
                pct(c.precision),
                pct(c.recall),
                c.roc_auc.map_or("n/a".to_string(), |v| format!("{v:.3}"))
            )?;
            if m.converged == Some(false) {
                write!(f, " (the solver stopped at max_iter before converging)")?;
            }
        }
        if let Some(mae) = m.mae {
            write!(f, "; holdout MAE {mae:.3}, MAPE {}", pct(m.mape))?;
        }
        if !m.skipped.is_empty() {
            write!(f, "; {} series skipped", m.skipped.len())?;
        }
        write!(f, " in {} ms", self.duration_ms)
    }
}

/// A model as `affluent ml list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The model.
    pub name: String,
    /// Its kind.
    pub kind: MlKind,
    /// Its last saved version (0: never trained).
    pub version: i64,
    /// When that version was trained.
    pub trained_at: Option<Timestamp>,
    /// Its metrics.
    pub metrics: Option<Metrics>,
}

fn app_id(name: &str) -> String {
    format!("affluent-ml:{name}")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MlError + '_ {
    move |source| MlError::File {
        path: path.to_path_buf(),
        source,
    }
}

/// The models of a project.
#[derive(Debug, Clone)]
pub struct Ml {
    warehouse: Warehouse,
}

/// The query's rows, with each role's column positions checked.
struct Data {
    model: String,
    rows: Rows,
}

impl Data {
    fn err(&self, reason: impl Into<String>) -> MlError {
        MlError::Data {
            model: self.model.clone(),
            reason: reason.into(),
        }
    }

    fn column(&self, name: &str, role: &str) -> Result<usize, MlError> {
        self.rows
            .columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| {
                self.err(format!(
                    "the {role} column `{name}` is not in the query's columns ({}): add it to `sql` or fix the name",
                    self.names()
                ))
            })
    }

    fn names(&self) -> String {
        self.rows
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The number in row `r` at column `c` (None when null).
    fn number(&self, r: usize, c: usize) -> Result<Option<f64>, MlError> {
        match &self.rows.rows[r][c] {
            Value::Null => Ok(None),
            Value::Number(n) => Ok(n.as_f64()),
            Value::Bool(b) => Ok(Some(if *b { 1.0 } else { 0.0 })),
            other => Err(self.err(format!(
                "column `{}` is not a number in row {} ({other}): cast it in `sql`",
                self.rows.columns[c].name,
                r + 1
            ))),
        }
    }

    /// The entity key of a row, as JSON text of its columns.
    fn key(&self, r: usize, entity: &[usize]) -> String {
        let obj: serde_json::Map<String, Value> = entity
            .iter()
            .map(|&c| {
                (
                    self.rows.columns[c].name.clone(),
                    self.rows.rows[r][c].clone(),
                )
            })
            .collect();
        Value::Object(obj).to_string()
    }
}

/// A column of the output: its type from the query's column.
fn output_type<'a>(info: &ColumnInfo, mut values: impl Iterator<Item = &'a Value>) -> TableType {
    match info.kind {
        "number" => {
            if values.all(|v| v.is_null() || v.is_i64()) {
                TableType::Int
            } else {
                TableType::Float
            }
        }
        "bool" => TableType::Bool,
        "date" => TableType::Date,
        "timestamp" => TableType::Timestamp,
        "text" => TableType::String,
        _ => TableType::Json,
    }
}

fn days_of(date: jiff::civil::Date) -> i32 {
    date.since(jiff::civil::date(1970, 1, 1))
        .map(|s| s.get_days())
        .unwrap_or(0)
}

/// A JSON value of the query as a cell of `ty`.
fn cell(v: &Value, ty: TableType) -> Cell {
    match (v, ty) {
        (Value::Null, _) => Cell::Null,
        (Value::Number(n), TableType::Int) => n.as_i64().map_or(Cell::Null, Cell::Int),
        (Value::Number(n), TableType::Float) => n.as_f64().map_or(Cell::Null, Cell::Float),
        (Value::Bool(b), TableType::Bool) => Cell::Bool(*b),
        (Value::String(s), TableType::Date) => s
            .parse::<jiff::civil::Date>()
            .map_or(Cell::Null, |d| Cell::Date(days_of(d))),
        (Value::String(s), TableType::Timestamp) => {
            micros_of(s).map_or(Cell::Null, Cell::Timestamp)
        }
        (Value::String(s), _) => Cell::Str(s.clone()),
        (other, _) => Cell::Str(other.to_string()),
    }
}

/// A time of the query (a date, or a timestamp with or without offset, read as UTC) in
/// microseconds since the epoch.
fn micros_of(text: &str) -> Option<i64> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Some(t.as_microsecond());
    }
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        return dt
            .to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_microsecond());
    }
    text.parse::<jiff::civil::Date>().ok().and_then(|d| {
        d.to_zoned(jiff::tz::TimeZone::UTC)
            .ok()
            .map(|z| z.timestamp().as_microsecond())
    })
}

/// The output's time cell of `micros` for a time column of kind `ty`.
fn time_cell(micros: i64, ty: TableType) -> Cell {
    match ty {
        TableType::Date => Cell::Date(micros.div_euclid(86_400_000_000) as i32),
        _ => Cell::Timestamp(micros),
    }
}

struct Output {
    columns: Vec<(String, TableType)>,
    cells: Vec<Vec<Cell>>,
}

impl Ml {
    /// The models of the warehouse's project.
    pub fn new(warehouse: Warehouse) -> Self {
        Self { warehouse }
    }

    fn config(&self, name: &str) -> Result<&MlConfig, MlError> {
        self.warehouse
            .project()
            .ml
            .get(name)
            .ok_or_else(|| MlError::Unknown {
                name: name.to_string(),
                known: {
                    let names: Vec<&str> = self
                        .warehouse
                        .project()
                        .ml
                        .keys()
                        .map(String::as_str)
                        .collect();
                    if names.is_empty() {
                        "none: declare [ml.NAME]".to_string()
                    } else {
                        names.join(", ")
                    }
                },
            })
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.warehouse
            .project()
            .data_dir
            .join("state")
            .join("ml")
            .join(name)
    }

    /// The models whose query reads one of these tables or models, in name order (a model
    /// whose SQL does not parse is left out, with a warning).
    pub fn reading(&self, changed: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for (name, m) in &self.warehouse.project().ml {
            match self
                .warehouse
                .tables_read(&m.sql, &format!("ml model `{name}`"))
            {
                Ok(reads) if changed.iter().any(|c| reads.contains(*c)) => out.push(name.clone()),
                Ok(_) => {}
                Err(e) => tracing::warn!(model = name, "ml model not trained: {e}"),
            }
        }
        out
    }

    /// Trains the models reading one of these tables or models; what fails is logged, never
    /// raised. Returns the reports of those trained.
    /// A model with `retrain` trained less than that long ago predicts with its last version
    /// instead (a forecast is left as it is).
    pub async fn after_change(&self, changed: &[&str]) -> Vec<TrainReport> {
        let mut out = Vec::new();
        for name in self.reading(changed) {
            let now = Timestamp::now();
            let result = match self.retrain_due(&name, now) {
                Ok(true) => self.train(&name, now).await,
                Ok(false) if self.config(&name).is_ok_and(|c| c.kind == MlKind::Forecast) => {
                    continue;
                }
                Ok(false) => self.predict(&name).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(r) => {
                    tracing::info!(model = name, "{r}");
                    out.push(r);
                }
                Err(e) => tracing::warn!(model = name, "ml model not trained: {e}"),
            }
        }
        out
    }

    /// Whether a change of what the model reads trains it (rather than predicting with its
    /// last version): no `retrain`, no saved version, a version trained on other features,
    /// or one trained at least `retrain` ago.
    fn retrain_due(&self, name: &str, now: Timestamp) -> Result<bool, MlError> {
        let config = self.config(name)?;
        let Some(every) = config.retrain else {
            return Ok(true);
        };
        let Some(last) = self.latest(name)? else {
            return Ok(true);
        };
        if last.features != config.features {
            return Ok(true);
        }
        let age = now.duration_since(last.trained_at);
        Ok(age.is_negative() || age.unsigned_abs() >= every.get())
    }

    /// The project's models and their last saved versions.
    pub fn list(&self) -> Result<Vec<ModelInfo>, MlError> {
        let mut out = Vec::new();
        for (name, m) in &self.warehouse.project().ml {
            let last = self.latest(name)?;
            out.push(ModelInfo {
                name: name.clone(),
                kind: m.kind,
                version: last.as_ref().map_or(0, |f| f.version),
                trained_at: last.as_ref().map(|f| f.trained_at),
                metrics: last.map(|f| f.metrics),
            });
        }
        Ok(out)
    }

    /// The last saved version of a model.
    pub fn latest(&self, name: &str) -> Result<Option<ModelFile>, MlError> {
        let dir = self.dir(name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut best: Option<(i64, PathBuf)> = None;
        for entry in entries {
            let path = entry.map_err(io(&dir))?.path();
            let version = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<i64>().ok());
            if let Some(v) = version
                && path.extension().is_some_and(|e| e == "json")
                && best.as_ref().is_none_or(|(b, _)| v > *b)
            {
                best = Some((v, path));
            }
        }
        let Some((_, path)) = best else {
            return Ok(None);
        };
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io(&path)(std::io::Error::other(e)))
    }

    /// Trains a new version of a model over the query's current rows, saves it, and writes its
    /// predictions and metrics.
    pub async fn train(&self, name: &str, now: Timestamp) -> Result<TrainReport, MlError> {
        let started = std::time::Instant::now();
        let config = self.config(name)?.clone();
        let _lock = lock(&self.dir(name), name).await?;
        let version = self.warehouse.app_version(ML_MODELS, &app_id(name)).await? + 1;
        let data = self.data(name, &config).await?;
        // The numerics on a blocking thread: the runtime keeps serving (the dashboard, loads).
        let cfg = config.clone();
        let (data, fitted) = blocking(name, move || {
            let fitted = fit_model(&data, &cfg);
            (data, fitted)
        })
        .await?;
        let (saved, metrics) = fitted?;
        let file = ModelFile {
            model: name.to_string(),
            version,
            trained_at: now,
            metrics,
            features: config.features.clone(),
            saved,
        };
        let path = self.dir(name).join(format!("{version}.json"));
        let bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| io(&path)(std::io::Error::other(e)))?;
        affluent_landing::write_atomic(&path, &bytes)
            .map_err(|e| io(&path)(std::io::Error::other(e.to_string())))?;
        let (cfg, saved) = (config.clone(), file.saved.clone());
        let output = blocking(name, move || predict(&data, &cfg, &saved)).await??;
        let predictions = output.cells.len();
        self.write(name, &config, output, &file).await?;
        Ok(TrainReport {
            model: name.to_string(),
            kind: config.kind,
            version,
            predictions,
            metrics: file.metrics,
            trained: true,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Applies the last saved version of a model to the query's current rows, without
    /// training, and writes its predictions.
    pub async fn predict(&self, name: &str) -> Result<TrainReport, MlError> {
        let started = std::time::Instant::now();
        let config = self.config(name)?.clone();
        let _lock = lock(&self.dir(name), name).await?;
        let file = self
            .latest(name)?
            .ok_or_else(|| MlError::Untrained(name.to_string()))?;
        let refuse = |reason: String| MlError::Data {
            model: name.to_string(),
            reason,
        };
        if config.kind == MlKind::Forecast {
            return Err(refuse(
                "a forecast's predictions are made when it is trained (they continue the series it saw): train it again to forecast from the current rows".to_string(),
            ));
        }
        if file.features != config.features {
            return Err(refuse(format!(
                "version {} was trained on the features {:?} and the project now names {:?}: train it again (`affluent ml train {name}`)",
                file.version, file.features, config.features
            )));
        }
        let data = self.data(name, &config).await?;
        let rows = data.rows.rows.len();
        let (cfg, saved) = (config.clone(), file.saved.clone());
        let output = blocking(name, move || predict(&data, &cfg, &saved)).await??;
        let predictions = output.cells.len();
        let mut metrics = file.metrics.clone();
        metrics.rows = rows;
        self.warehouse
            .replace_rows(
                name,
                &to_rows(name, file.version, output),
                &app_id(name),
                file.version,
            )
            .await?;
        Ok(TrainReport {
            model: name.to_string(),
            kind: config.kind,
            version: file.version,
            predictions,
            metrics,
            trained: false,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    async fn data(&self, name: &str, config: &MlConfig) -> Result<Data, MlError> {
        let reader = self.warehouse.reader().await?;
        let rows = reader.rows(&config.sql, &HashMap::new()).await?;
        Ok(Data {
            model: name.to_string(),
            rows,
        })
    }

    async fn write(
        &self,
        name: &str,
        config: &MlConfig,
        output: Output,
        file: &ModelFile,
    ) -> Result<(), MlError> {
        let app = app_id(name);
        self.warehouse
            .replace_rows(
                name,
                &to_rows(name, file.version, output),
                &app,
                file.version,
            )
            .await?;
        let m = &file.metrics;
        let c = m.classification.as_ref();
        let float = |x: Option<f64>| x.map_or(Cell::Null, Cell::Float);
        let columns: Vec<(String, TableType)> = [
            ("model", TableType::String),
            ("version", TableType::Int),
            ("kind", TableType::String),
            ("trained_at", TableType::Timestamp),
            ("rows", TableType::Int),
            ("train_rows", TableType::Int),
            ("test_rows", TableType::Int),
            ("accuracy", TableType::Float),
            ("precision", TableType::Float),
            ("recall", TableType::Float),
            ("roc_auc", TableType::Float),
            ("mae", TableType::Float),
            ("mape", TableType::Float),
            ("metrics", TableType::Json),
        ]
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
        let row = vec![
            Cell::Str(name.to_string()),
            Cell::Int(file.version),
            Cell::Str(config.kind.as_str().to_string()),
            Cell::Timestamp(file.trained_at.as_microsecond()),
            Cell::Int(m.rows as i64),
            Cell::Int(m.train_rows as i64),
            Cell::Int(m.test_rows as i64),
            float(c.map(|c| c.accuracy)),
            float(c.and_then(|c| c.precision)),
            float(c.and_then(|c| c.recall)),
            float(c.and_then(|c| c.roc_auc)),
            float(m.mae),
            float(m.mape),
            Cell::Str(serde_json::to_string(m).unwrap_or_default()),
        ];
        let rows = TableRows {
            unknown: vec![false; columns.len()],
            columns,
            cells: vec![row],
            entries: vec![format!("ml:{name}:{}", file.version)],
        };
        self.warehouse
            .append_rows(ML_MODELS, &rows, &app, file.version)
            .await?;
        Ok(())
    }
}

/// Runs numerics on a blocking thread.
async fn blocking<T: Send + 'static>(
    model: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, MlError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| MlError::Data {
            model: model.to_string(),
            reason: format!("the computation stopped: {e}"),
        })
}

fn to_rows(name: &str, version: i64, mut output: Output) -> TableRows {
    output
        .columns
        .push(("model_version".to_string(), TableType::Int));
    for row in &mut output.cells {
        row.push(Cell::Int(version));
    }
    let n = output.cells.len();
    TableRows {
        unknown: vec![false; output.columns.len()],
        columns: output.columns,
        cells: output.cells,
        entries: vec![format!("ml:{name}:{version}"); n],
    }
}

/// Holds `NAME.lock` in the model's folder until dropped: one training of a model at a time,
/// across processes (waiting on a blocking thread).
async fn lock(dir: &Path, name: &str) -> Result<std::fs::File, MlError> {
    let path = dir.join(format!("{name}.lock"));
    affluent_landing::lock_exclusive(&path)
        .await
        .map_err(io(&path))
}

/// The feature rows (rows with a null or non-finite feature are left out).
fn features(data: &Data, config: &MlConfig) -> Result<(Vec<usize>, Vec<Vec<f64>>), MlError> {
    let cols: Vec<usize> = config
        .features
        .iter()
        .map(|f| data.column(f, "feature"))
        .collect::<Result<_, _>>()?;
    let mut kept = Vec::new();
    let mut x = Vec::new();
    'rows: for r in 0..data.rows.rows.len() {
        let mut row = Vec::with_capacity(cols.len());
        for &c in &cols {
            match data.number(r, c)? {
                Some(v) if v.is_finite() => row.push(v),
                _ => continue 'rows,
            }
        }
        kept.push(r);
        x.push(row);
    }
    Ok((kept, x))
}

fn label_of(data: &Data, r: usize, c: usize) -> Result<Option<bool>, MlError> {
    match &data.rows.rows[r][c] {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) if n.as_f64() == Some(1.0) => Ok(Some(true)),
        Value::Number(n) if n.as_f64() == Some(0.0) => Ok(Some(false)),
        other => Err(data.err(format!(
            "the label `{}` must be true/false or 1/0 (row {} has {other})",
            data.rows.columns[c].name,
            r + 1
        ))),
    }
}

/// Fits a model on the query's rows: what to save and how good it is.
fn fit_model(data: &Data, config: &MlConfig) -> Result<(Saved, Metrics), MlError> {
    let mut metrics = Metrics {
        rows: data.rows.rows.len(),
        ..Metrics::default()
    };
    match config.kind {
        MlKind::LogisticRegression => {
            let label = config.label.as_deref().unwrap_or_default();
            let lc = data.column(label, "label")?;
            let (kept, x) = features(data, config)?;
            let mut labelled = Vec::new();
            for (i, &r) in kept.iter().enumerate() {
                if let Some(y) = label_of(data, r, lc)? {
                    labelled.push((i, y));
                }
            }
            let positives = labelled.iter().filter(|(_, y)| *y).count();
            if positives == 0 || positives == labelled.len() {
                return Err(data.err(format!(
                    "the label `{label}` needs both classes among the labelled rows with every feature ({positives} true of {})",
                    labelled.len()
                )));
            }
            let test_fraction = config.test_fraction.unwrap_or(0.2);
            let order = fit::shuffled(labelled.len(), config.seed.unwrap_or(42));
            let n_test = (labelled.len() as f64 * test_fraction).round() as usize;
            let (test, train): (Vec<usize>, Vec<usize>) = if n_test == 0 {
                (order.clone(), order)
            } else {
                (order[..n_test].to_vec(), order[n_test..].to_vec())
            };
            let scale = config.scale.unwrap_or(true);
            let train_x: Vec<Vec<f64>> = train.iter().map(|&i| x[labelled[i].0].clone()).collect();
            let scaler = if scale {
                Scaler::fit(&train_x)
            } else {
                Scaler::identity(config.features.len())
            };
            let sx: Vec<Vec<f64>> = train_x.iter().map(|r| scaler.apply(r)).collect();
            let sy: Vec<bool> = train.iter().map(|&i| labelled[i].1).collect();
            let train_positives = sy.iter().filter(|&&y| y).count();
            if train_positives == 0 || train_positives == sy.len() {
                return Err(data.err(format!(
                    "the rows learnt from ({} of {} labelled, after holding out test_fraction = {test_fraction}) hold one class only ({train_positives} true): lower `test_fraction` or label more rows",
                    sy.len(),
                    labelled.len()
                )));
            }
            let weights = match config.class_weight.unwrap_or(ClassWeight::None) {
                ClassWeight::Balanced => fit::balanced_weights(&sy),
                ClassWeight::None => vec![1.0; sy.len()],
            };
            let model = fit::logistic(
                &sx,
                &sy,
                &weights,
                config.c.unwrap_or(1.0),
                u64::from(config.max_iter.unwrap_or(1000)),
            )
            .map_err(|e| data.err(e))?;
            let threshold = config.threshold.unwrap_or(0.5);
            let tp: Vec<f64> = test
                .iter()
                .map(|&i| model.probability(&scaler.apply(&x[labelled[i].0])))
                .collect();
            let ty: Vec<bool> = test.iter().map(|&i| labelled[i].1).collect();
            metrics.train_rows = train.len();
            metrics.test_rows = test.len();
            metrics.held_out = n_test > 0;
            metrics.classification = Some(fit::classification(&tp, &ty, threshold));
            metrics.iterations = Some(model.iterations);
            metrics.converged = Some(model.converged);
            Ok((
                Saved::LogisticRegression {
                    scaler,
                    model,
                    threshold,
                },
                metrics,
            ))
        }
        MlKind::Knn => {
            let (_, x) = features(data, config)?;
            let k = config.k.unwrap_or(5);
            if x.len() < 2 {
                return Err(data.err(format!(
                    "k nearest neighbours need at least 2 rows with every feature (the query gave {})",
                    x.len()
                )));
            }
            let scaler = if config.scale.unwrap_or(true) {
                Scaler::fit(&x)
            } else {
                Scaler::identity(config.features.len())
            };
            metrics.train_rows = x.len();
            Ok((
                Saved::Knn {
                    scaler,
                    k,
                    metric: config.metric.unwrap_or(Metric::Euclidean),
                },
                metrics,
            ))
        }
        MlKind::IsolationForest => {
            let (_, x) = features(data, config)?;
            if x.len() < 2 {
                return Err(data.err(format!(
                    "an isolation forest needs at least 2 rows with every feature (the query gave {})",
                    x.len()
                )));
            }
            let forest = IsolationForest::fit(
                &x,
                config.trees.unwrap_or(100),
                config.sample.unwrap_or(256),
                config.seed.unwrap_or(42),
            );
            metrics.train_rows = x.len();
            Ok((
                Saved::IsolationForest {
                    forest,
                    threshold: config.threshold.unwrap_or(0.5),
                },
                metrics,
            ))
        }
        MlKind::Forecast => {
            let horizon = config.horizon.unwrap_or(1);
            let holdout = config.holdout.unwrap_or(horizon);
            let interval = config.interval.unwrap_or(0.95);
            let mut series = BTreeMap::new();
            let (mut maes, mut mapes) = (Vec::new(), Vec::new());
            for (key, s) in series_of(data, config)? {
                let fit = |y: &[Option<f64>]| match config
                    .method
                    .unwrap_or(ForecastMethod::HoltWinters)
                {
                    ForecastMethod::Linear => forecast::linear(y),
                    ForecastMethod::HoltWinters => {
                        forecast::holt_winters(y, config.season.unwrap_or(7))
                    }
                };
                let y = &s.grid;
                if holdout > 0 && y.len() > holdout {
                    let (head, tail) = y.split_at(y.len() - holdout);
                    match fit(head) {
                        Ok(f) => {
                            let steps = f.forecast(holdout, interval);
                            let (actual, predicted): (Vec<f64>, Vec<f64>) = tail
                                .iter()
                                .zip(&steps)
                                .filter_map(|(a, p)| Some(((*a)?, p.as_ref()?.value)))
                                .unzip();
                            if !actual.is_empty() {
                                let (mae, mape) = fit::errors(&actual, &predicted);
                                maes.push(mae);
                                mapes.extend(mape);
                                metrics.test_rows += actual.len();
                            }
                        }
                        Err(e) => metrics.skipped.push(format!("{key} (holdout): {e}")),
                    }
                }
                match fit(y) {
                    Ok(model) => {
                        metrics.train_rows += y.iter().flatten().count();
                        series.insert(
                            key,
                            SavedSeries {
                                model,
                                first: s.first,
                                spacing: s.spacing,
                                len: y.len(),
                            },
                        );
                    }
                    Err(e) => metrics.skipped.push(format!("{key}: {e}")),
                }
            }
            if series.is_empty() {
                return Err(data.err(format!(
                    "no series could be forecast: {}",
                    if metrics.skipped.is_empty() {
                        "the query gave no rows".to_string()
                    } else {
                        metrics.skipped.join("; ")
                    }
                )));
            }
            let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            metrics.mae = mean(&maes);
            metrics.mape = mean(&mapes);
            Ok((
                Saved::Forecast {
                    series,
                    horizon,
                    interval,
                },
                metrics,
            ))
        }
    }
}

/// One entity's series on a regular grid: the first time (microseconds), the step, and the
/// value at each step (None: no observation then).
struct Series {
    first: i64,
    spacing: Spacing,
    grid: Vec<Option<f64>>,
}

/// The most steps a series' grid may have per observation: beyond, its times are too irregular
/// for a step-by-step model.
const MAX_GRID_PER_VALUE: usize = 50;

fn series_of(data: &Data, config: &MlConfig) -> Result<BTreeMap<String, Series>, MlError> {
    let tc = data.column(config.time.as_deref().unwrap_or_default(), "time")?;
    let vc = data.column(config.value.as_deref().unwrap_or_default(), "value")?;
    let entity: Vec<usize> = config
        .entity
        .iter()
        .map(|e| data.column(e, "entity"))
        .collect::<Result<_, _>>()?;
    let mut out: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for r in 0..data.rows.rows.len() {
        let time = match &data.rows.rows[r][tc] {
            Value::Null => continue,
            Value::String(s) => micros_of(s).ok_or_else(|| {
                data.err(format!(
                    "the time `{}` of row {} is not a date or timestamp ({s})",
                    data.rows.columns[tc].name,
                    r + 1
                ))
            })?,
            other => {
                return Err(data.err(format!(
                    "the time column `{}` must be a date or timestamp (row {} has {other})",
                    data.rows.columns[tc].name,
                    r + 1
                )));
            }
        };
        let Some(v) = data.number(r, vc)? else {
            continue;
        };
        out.entry(data.key(r, &entity)).or_default().push((time, v));
    }
    let mut series = BTreeMap::new();
    for (k, mut values) in out {
        values.sort_by_key(|(t, _)| *t);
        // The step: the most common gap (a closed day does not change a daily series).
        let mut gaps: BTreeMap<i64, usize> = BTreeMap::new();
        for w in values.windows(2) {
            if w[1].0 > w[0].0 {
                *gaps.entry(w[1].0 - w[0].0).or_default() += 1;
            }
        }
        let spacing = Spacing::of(
            gaps.into_iter()
                .max_by_key(|(g, n)| (*n, -*g))
                .map_or(DAY, |(g, _)| g),
        );
        let first = values.first().map_or(0, |(t, _)| *t);
        let last = values.last().map_or(0, |(t, _)| *t);
        let len = spacing.position(first, last).max(0) as usize + 1;
        if len > values.len() * MAX_GRID_PER_VALUE {
            return Err(data.err(format!(
                "the times of series {k} are too irregular to forecast step by step ({} values over {len} steps of its most common gap)",
                values.len()
            )));
        }
        let mut grid: Vec<Option<f64>> = vec![None; len];
        let mut at_of: Vec<i64> = vec![0; len];
        for (t, v) in values {
            // A time between two steps counts at the nearest.
            let at = spacing.position(first, t).clamp(0, len as i64 - 1) as usize;
            if grid[at].is_some() {
                let show = |m: i64| {
                    Timestamp::from_microsecond(m).map_or(m.to_string(), |t| t.to_string())
                };
                return Err(data.err(format!(
                    "series {k} has two values in one step ({} and {}): aggregate them to one per step in `sql`",
                    show(at_of[at]),
                    show(t)
                )));
            }
            grid[at] = Some(v);
            at_of[at] = t;
        }
        series.insert(
            k,
            Series {
                first,
                spacing,
                grid,
            },
        );
    }
    Ok(series)
}

/// The predictions of a saved model over the query's rows.
fn predict(data: &Data, config: &MlConfig, saved: &Saved) -> Result<Output, MlError> {
    let entity: Vec<usize> = config
        .entity
        .iter()
        .map(|e| data.column(e, "entity"))
        .collect::<Result<_, _>>()?;
    let entity_types: Vec<TableType> = entity
        .iter()
        .map(|&c| output_type(&data.rows.columns[c], data.rows.rows.iter().map(|r| &r[c])))
        .collect();
    let mut columns: Vec<(String, TableType)> = entity
        .iter()
        .zip(&entity_types)
        .map(|(&c, t)| (data.rows.columns[c].name.clone(), *t))
        .collect();
    let entity_cells = |r: usize| -> Vec<Cell> {
        entity
            .iter()
            .zip(&entity_types)
            .map(|(&c, t)| cell(&data.rows.rows[r][c], *t))
            .collect()
    };
    let mut cells = Vec::new();
    match saved {
        Saved::LogisticRegression {
            scaler,
            model,
            threshold,
        } => {
            let label = config.label.as_deref().unwrap_or_default();
            let lc = data.column(label, "label")?;
            columns.push((label.to_string(), TableType::Bool));
            columns.push(("probability".to_string(), TableType::Float));
            columns.push(("predicted".to_string(), TableType::Bool));
            let (kept, x) = features(data, config)?;
            for (r, row) in kept.iter().zip(&x) {
                let p = model.probability(&scaler.apply(row));
                let mut out = entity_cells(*r);
                out.push(label_of(data, *r, lc)?.map_or(Cell::Null, Cell::Bool));
                out.push(Cell::Float(p));
                out.push(Cell::Bool(p >= *threshold));
                cells.push(out);
            }
        }
        Saved::Knn { scaler, k, metric } => {
            let (kept, x) = features(data, config)?;
            let scaled: Vec<Vec<f64>> = x.iter().map(|r| scaler.apply(r)).collect();
            columns.push(("rank".to_string(), TableType::Int));
            for (&c, t) in entity.iter().zip(&entity_types) {
                columns.push((format!("neighbour_{}", data.rows.columns[c].name), *t));
            }
            columns.push(("distance".to_string(), TableType::Float));
            for (i, near) in fit::neighbours(&scaled, *k, *metric)
                .into_iter()
                .enumerate()
            {
                for (rank, (j, d)) in near.into_iter().enumerate() {
                    let mut out = entity_cells(kept[i]);
                    out.push(Cell::Int(rank as i64 + 1));
                    out.extend(entity_cells(kept[j]));
                    out.push(Cell::Float(d));
                    cells.push(out);
                }
            }
        }
        Saved::IsolationForest { forest, threshold } => {
            columns.push(("score".to_string(), TableType::Float));
            columns.push(("anomaly".to_string(), TableType::Bool));
            let (kept, x) = features(data, config)?;
            for (r, row) in kept.iter().zip(&x) {
                let score = forest.score(row);
                let mut out = entity_cells(*r);
                out.push(Cell::Float(score));
                out.push(Cell::Bool(score > *threshold));
                cells.push(out);
            }
        }
        Saved::Forecast {
            series,
            horizon,
            interval,
        } => {
            let tc = data.column(config.time.as_deref().unwrap_or_default(), "time")?;
            let time_type = match data.rows.columns[tc].kind {
                "date" => TableType::Date,
                _ => TableType::Timestamp,
            };
            columns.push((data.rows.columns[tc].name.clone(), time_type));
            for c in ["forecast", "lower", "upper"] {
                columns.push((c.to_string(), TableType::Float));
            }
            columns.push(("step".to_string(), TableType::Int));
            // The entity cells of each series, from its first row.
            let mut first: HashMap<String, usize> = HashMap::new();
            for r in 0..data.rows.rows.len() {
                first.entry(data.key(r, &entity)).or_insert(r);
            }
            for (key, s) in series {
                let Some(&r) = first.get(key) else {
                    continue;
                };
                for (h, step) in s
                    .model
                    .forecast(*horizon, *interval)
                    .into_iter()
                    .enumerate()
                {
                    let Some(step) = step else {
                        continue;
                    };
                    let mut out = entity_cells(r);
                    out.push(time_cell(
                        s.spacing.time(s.first, (s.len + h) as i64),
                        time_type,
                    ));
                    out.push(Cell::Float(step.value));
                    out.push(Cell::Float(step.lower));
                    out.push(Cell::Float(step.upper));
                    out.push(Cell::Int(h as i64 + 1));
                    cells.push(out);
                }
            }
        }
    }
    Ok(Output { columns, cells })
}

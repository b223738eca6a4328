//! `[ml.NAME]`: small models trained over a read-only query, and their checks.
//!
//! ```toml
//! [ml.future_star]
//! kind = "logistic_regression"
//! sql = "SELECT artist_id, fans_followers, popularity, engagement, score_per_follower, is_star FROM artist_features"
//! entity = ["artist_id"]
//! features = ["fans_followers", "popularity", "engagement", "score_per_follower"]
//! label = "is_star"
//! c = 0.1
//! class_weight = "balanced"
//!
//! [ml.similar_artists]
//! kind = "knn"
//! sql = "SELECT artist_id, fans_followers, popularity FROM artist_features"
//! entity = ["artist_id"]
//! features = ["fans_followers", "popularity"]
//! k = 5
//!
//! [ml.footfall_forecast]
//! kind = "forecast"
//! sql = "SELECT agency_name, date, visits FROM footfall_days"
//! entity = ["agency_name"]        # one series per agency
//! time = "date"
//! value = "visits"
//! method = "holt_winters"
//! season = 7
//! horizon = 28
//! ```
//!
//! Each model writes its predictions to a Delta table of its own name, replaced at each
//! training, and a row per trained version (with its metrics) to `ml_models`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeTable;

use crate::diagnostics::Reporter;
use crate::validate::{check_name, span_in};

/// The table of trained model versions, present when the project has `[ml.*]`.
pub const ML_MODELS: &str = "ml_models";

/// `[ml.NAME]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlConfig {
    /// `logistic_regression`, `knn`, `forecast` or `isolation_forest`.
    pub kind: MlKind,
    /// The rows it learns from: a read-only query over the tables and models.
    pub sql: String,
    /// Columns naming what a row is (an artist, a station), copied to the predictions so that
    /// they join back; required, except for `forecast`, where each entity is a series of its
    /// own (empty: the query is one series).
    #[serde(default)]
    pub entity: Vec<String>,
    /// `logistic_regression`, `knn` and `isolation_forest`: the numeric columns learnt from.
    #[serde(default)]
    pub features: Vec<String>,
    /// `logistic_regression`: the column to predict (true/false, or 1/0). Rows where it is null
    /// are predicted but not learnt from.
    pub label: Option<String>,
    /// `logistic_regression`: inverse of the L2 regularization strength, as scikit-learn's `C`
    /// (default 1.0; smaller is stronger).
    pub c: Option<f64>,
    /// `logistic_regression`: `"balanced"` weighs each class inversely to its frequency (as
    /// scikit-learn's `class_weight="balanced"`); default: every row weighs 1.
    pub class_weight: Option<ClassWeight>,
    /// `logistic_regression`: the probability from which a row is predicted true (default 0.5).
    /// `isolation_forest`: the score from which a row is an anomaly (default 0.5, as
    /// scikit-learn's `contamination="auto"`).
    pub threshold: Option<f64>,
    /// `isolation_forest`: trees grown (default 100).
    pub trees: Option<usize>,
    /// `isolation_forest`: rows drawn for each tree (default 256, or every row when fewer).
    pub sample: Option<usize>,
    /// `logistic_regression` and `knn`: scale each feature to mean 0 and variance 1 first
    /// (scikit-learn's `StandardScaler`; default true).
    pub scale: Option<bool>,
    /// `logistic_regression`: the share of labelled rows held out to measure the model
    /// (accuracy, precision, recall, ROC AUC), chosen at random with `seed` (default 0.2; 0:
    /// measured on the rows it learnt from, and said so).
    pub test_fraction: Option<f64>,
    /// The seed of every random choice (default 42): the same data and seed give the same
    /// model.
    pub seed: Option<u64>,
    /// `logistic_regression`: the most solver iterations (default 1000).
    pub max_iter: Option<u32>,
    /// `knn`: neighbours per row (default 5).
    pub k: Option<usize>,
    /// `knn`: `euclidean` (default), `manhattan` or `cosine`.
    pub metric: Option<Metric>,
    /// `forecast`: the column ordering a series (a date or timestamp).
    pub time: Option<String>,
    /// `forecast`: the numeric column forecast.
    pub value: Option<String>,
    /// `forecast`: `linear` (a straight trend) or `holt_winters` (additive level, trend and
    /// season, the ETS(A,A,A) model; default).
    pub method: Option<ForecastMethod>,
    /// `forecast` with `holt_winters`: observations per season (7 for a weekly cycle of daily
    /// values, 24 for a daily cycle of hourly values).
    pub season: Option<usize>,
    /// `forecast`: how many steps ahead (at the series' own spacing).
    pub horizon: Option<usize>,
    /// `forecast`: the coverage of the prediction interval (default 0.95).
    pub interval: Option<f64>,
    /// `forecast`: the last observations held out to measure the model (MAE, MAPE), before it
    /// is fitted again on the whole series (default: `horizon`).
    pub holdout: Option<usize>,
    /// Train at most this often (`"1h"`): when what the model reads changes sooner than that
    /// after its last training, the last version predicts the current rows instead (a
    /// forecast keeps the predictions of its last training). Default: train at every change.
    pub retrain: Option<crate::values::ConfigDuration>,
}

/// What a model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MlKind {
    /// Binary classification with probabilities.
    LogisticRegression,
    /// The k most similar rows of each row.
    Knn,
    /// A series' next values with prediction intervals.
    Forecast,
    /// An anomaly score per row (an isolation forest), for alerts to read.
    IsolationForest,
}

impl MlKind {
    /// Its name in the project file.
    pub fn as_str(self) -> &'static str {
        match self {
            MlKind::LogisticRegression => "logistic_regression",
            MlKind::Knn => "knn",
            MlKind::Forecast => "forecast",
            MlKind::IsolationForest => "isolation_forest",
        }
    }
}

/// Row weights of a logistic regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// `n / (2 × rows of the class)`.
    Balanced,
    /// Every row weighs 1.
    None,
}

/// A distance between feature vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Straight-line distance.
    Euclidean,
    /// Sum of absolute differences.
    Manhattan,
    /// 1 − cosine similarity.
    Cosine,
}

/// How a series is forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ForecastMethod {
    /// Least squares on time.
    Linear,
    /// Additive Holt-Winters (ETS(A,A,A)).
    HoltWinters,
}

fn fraction(x: f64, low_open: bool) -> bool {
    x.is_finite() && x < 1.0 && if low_open { x > 0.0 } else { x >= 0.0 }
}

pub(crate) fn check(
    reporter: &mut Reporter<'_>,
    settings: &crate::schema::ProjectSettings,
    root: &Spanned<DeTable<'_>>,
) {
    let ml: &BTreeMap<String, MlConfig> = &settings.ml;
    let taken =
        |name: &str| settings.tables.contains_key(name) || settings.models.contains_key(name);
    if !ml.is_empty() && taken(ML_MODELS) {
        reporter.error(
            span_in(root, &["tables", ML_MODELS]).or_else(|| span_in(root, &["models", ML_MODELS])),
            format!("`{ML_MODELS}` is the table of trained models: give this table or model another name"),
        );
    }
    for (name, m) in ml {
        let at = |path: &[&str]| {
            let mut full = vec!["ml", name.as_str()];
            full.extend_from_slice(path);
            span_in(root, &full)
        };
        check_name(reporter, "ml model", name, at(&[]));
        if taken(name) || name == ML_MODELS || name == "alert_firings" {
            reporter.error(
                at(&[]),
                format!(
                    "`{name}` is already a table or model: the predictions of `[ml.{name}]` are a table of that name, so give one of them another name"
                ),
            );
        }
        if m.sql.trim().is_empty() {
            reporter.error(
                at(&["sql"]),
                format!("ml model `{name}` has an empty `sql`"),
            );
        }
        let kind = m.kind.as_str();
        // Keys that belong to other kinds.
        let mut misplaced: Vec<&str> = Vec::new();
        let mut needs = |key: &'static str, present: bool| {
            if !present {
                reporter.error(at(&[]), format!("ml model `{name}` ({kind}) needs `{key}`"));
            }
        };
        match m.kind {
            MlKind::LogisticRegression => {
                needs("features", !m.features.is_empty());
                needs("label", m.label.is_some());
            }
            MlKind::Knn | MlKind::IsolationForest => needs("features", !m.features.is_empty()),
            MlKind::Forecast => {
                needs("time", m.time.is_some());
                needs("value", m.value.is_some());
                needs("horizon", m.horizon.is_some());
                if m.method.unwrap_or(ForecastMethod::HoltWinters) == ForecastMethod::HoltWinters {
                    needs("season", m.season.is_some());
                }
            }
        }
        if m.kind != MlKind::Forecast && m.entity.is_empty() {
            reporter.error(
                at(&["entity"]),
                format!(
                    "ml model `{name}` ({kind}) needs `entity`: the columns naming each row, copied to its predictions"
                ),
            );
        }
        // The columns the predictions add: an entity column of the same name would clash.
        let added: Vec<String> = match m.kind {
            MlKind::LogisticRegression => ["probability", "predicted"]
                .iter()
                .map(|s| s.to_string())
                .chain(m.label.clone())
                .collect(),
            MlKind::Knn => ["rank", "distance"]
                .iter()
                .map(|s| s.to_string())
                .chain(m.entity.iter().map(|e| format!("neighbour_{e}")))
                .collect(),
            MlKind::IsolationForest => vec!["score".to_string(), "anomaly".to_string()],
            MlKind::Forecast => ["forecast", "lower", "upper", "step"]
                .iter()
                .map(|s| s.to_string())
                .chain(m.time.clone())
                .collect(),
        };
        for e in &m.entity {
            if e == "model_version" || added.contains(e) {
                reporter.error(
                    at(&["entity"]),
                    format!(
                        "entity column `{e}` of ml model `{name}` clashes with a column its predictions add ({}, model_version): rename it in `sql`",
                        added.join(", ")
                    ),
                );
            }
        }
        let logistic = m.kind == MlKind::LogisticRegression;
        let knn = m.kind == MlKind::Knn;
        let forecast = m.kind == MlKind::Forecast;
        let forest = m.kind == MlKind::IsolationForest;
        for (key, present, allowed) in [
            (
                "features",
                !m.features.is_empty(),
                logistic || knn || forest,
            ),
            ("label", m.label.is_some(), logistic),
            ("c", m.c.is_some(), logistic),
            ("class_weight", m.class_weight.is_some(), logistic),
            ("threshold", m.threshold.is_some(), logistic || forest),
            ("trees", m.trees.is_some(), forest),
            ("sample", m.sample.is_some(), forest),
            ("scale", m.scale.is_some(), logistic || knn),
            ("test_fraction", m.test_fraction.is_some(), logistic),
            ("max_iter", m.max_iter.is_some(), logistic),
            ("k", m.k.is_some(), knn),
            ("metric", m.metric.is_some(), knn),
            ("time", m.time.is_some(), forecast),
            ("value", m.value.is_some(), forecast),
            ("method", m.method.is_some(), forecast),
            ("season", m.season.is_some(), forecast),
            ("horizon", m.horizon.is_some(), forecast),
            ("interval", m.interval.is_some(), forecast),
            ("holdout", m.holdout.is_some(), forecast),
        ] {
            if present && !allowed {
                misplaced.push(key);
            }
        }
        for key in misplaced {
            reporter.error(
                at(&[key]),
                format!("`{key}` does not apply to a `{kind}` model (ml model `{name}`)"),
            );
        }
        if let Some(c) = m.c
            && !(c.is_finite() && c > 0.0)
        {
            reporter.error(
                at(&["c"]),
                "`c` must be a positive number (scikit-learn's C)",
            );
        }
        if let Some(t) = m.threshold
            && !fraction(t, true)
        {
            reporter.error(at(&["threshold"]), "`threshold` must be between 0 and 1");
        }
        if let Some(t) = m.test_fraction
            && !fraction(t, false)
        {
            reporter.error(
                at(&["test_fraction"]),
                "`test_fraction` must be at least 0 and less than 1",
            );
        }
        if let Some(i) = m.interval
            && !fraction(i, true)
        {
            reporter.error(
                at(&["interval"]),
                "`interval` must be between 0 and 1 (0.95: a 95 % prediction interval)",
            );
        }
        if m.retrain.is_some_and(|r| r.get().is_zero()) {
            reporter.error(
                at(&["retrain"]),
                "`retrain` must be longer than 0s (leave it out to train at every change)",
            );
        }
        if m.trees == Some(0) {
            reporter.error(at(&["trees"]), "`trees` must be at least 1");
        }
        if m.sample.is_some_and(|s| s < 2) {
            reporter.error(at(&["sample"]), "`sample` must be at least 2");
        }
        if m.k == Some(0) {
            reporter.error(at(&["k"]), "`k` must be at least 1");
        }
        if m.max_iter == Some(0) {
            reporter.error(at(&["max_iter"]), "`max_iter` must be at least 1");
        }
        if m.horizon == Some(0) {
            reporter.error(at(&["horizon"]), "`horizon` must be at least 1");
        }
        if let Some(s) = m.season
            && s < 2
        {
            reporter.error(at(&["season"]), "`season` must be at least 2");
        }
        if m.season.is_some() && m.method == Some(ForecastMethod::Linear) {
            reporter.error(
                at(&["season"]),
                "`season` is for `method = \"holt_winters\"`: a linear trend has no season",
            );
        }
        let mut columns: Vec<&String> = m.entity.iter().chain(&m.features).collect();
        columns.extend(m.label.iter().chain(&m.time).chain(&m.value));
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                reporter.error(
                    at(&[]),
                    format!(
                        "column `{c}` is named twice in ml model `{name}`: each column has one role"
                    ),
                );
            }
        }
    }
}

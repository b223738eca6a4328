//! ML models over real Delta tables, compared with what scikit-learn and statsmodels compute on
//! the same committed data (`tests/data/`, written by `bench/ml_reference.py generate`):
//! logistic regression probabilities and coefficients, kNN neighbour sets, a Holt-Winters
//! forecast's holdout error; versions, saved models, and clear errors on bad data.

#![allow(clippy::unwrap_used)] // tests fail loudly

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use affluent_config::Environment;
use affluent_ml::{Ml, MlError};
use affluent_sources::{Connectors, IngestOptions};
use affluent_tables::{LoadScope, Warehouse};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

const PROJECT: &str = r#"
name = "ml"

[sources.artists]
type = "csv"
path = "artists.csv"
[tables.artists]
source = "artists"

[sources.series]
type = "csv"
path = "series.csv"
[tables.series]
source = "series"
[tables.series.columns]
agency = { path = "agency", type = "string" }
day = { path = "day", type = "date" }
visits = { path = "visits", type = "float" }

[sources.points]
type = "csv"
path = "anomalies.csv"
[tables.points]
source = "points"

[ml.outliers]
kind = "isolation_forest"
sql = "SELECT point, x1, x2, x3 FROM points"
entity = ["point"]
features = ["x1", "x2", "x3"]

[ml.stars]
kind = "logistic_regression"
sql = "SELECT artist_id, fans_followers, popularity, engagement, score_per_follower, is_star FROM artists"
entity = ["artist_id"]
features = ["fans_followers", "popularity", "engagement", "score_per_follower"]
label = "is_star"
c = 0.1
class_weight = "balanced"
test_fraction = 0

[ml.stars_held_out]
kind = "logistic_regression"
sql = "SELECT artist_id, fans_followers, popularity, engagement, score_per_follower, is_star FROM artists"
entity = ["artist_id"]
features = ["fans_followers", "popularity", "engagement", "score_per_follower"]
label = "is_star"
c = 0.1
class_weight = "balanced"

[ml.similar]
kind = "knn"
sql = "SELECT artist_id, fans_followers, popularity, engagement, score_per_follower FROM artists"
entity = ["artist_id"]
features = ["fans_followers", "popularity", "engagement", "score_per_follower"]
k = 5

[ml.visits_forecast]
kind = "forecast"
sql = "SELECT agency, day, visits FROM series"
entity = ["agency"]
time = "day"
value = "visits"
method = "holt_winters"
season = 7
horizon = 28
holdout = 28

[ml.visits_closed_sundays]
kind = "forecast"
sql = "SELECT agency, day, visits FROM series WHERE date_part('dow', day) <> 0"
entity = ["agency"]
time = "day"
value = "visits"
season = 7
horizon = 28

[ml.monthly]
kind = "forecast"
sql = "SELECT agency, date_trunc('month', day) AS month, sum(visits) AS visits FROM series GROUP BY 1, 2"
entity = ["agency"]
time = "month"
value = "visits"
method = "linear"
horizon = 3
holdout = 0

[ml.visits_trend]
kind = "forecast"
sql = "SELECT agency, day, visits FROM series"
entity = ["agency"]
time = "day"
value = "visits"
method = "linear"
horizon = 7
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    warehouse: Warehouse,
    ml: Ml,
}

async fn fixture_with(extra: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        format!("{PROJECT}\n{extra}"),
    )
    .unwrap();
    for f in ["artists.csv", "series.csv", "anomalies.csv"] {
        std::fs::copy(format!("{DATA}/{f}"), dir.path().join(f)).unwrap();
    }
    let project =
        affluent_config::load_with_env(dir.path(), &Environment::from_map(BTreeMap::new()))
            .unwrap_or_else(|e| panic!("{e}"));
    let connectors = Arc::new(Connectors::new(project).unwrap());
    let warehouse = Warehouse::new(connectors.clone());
    for source in ["artists", "series", "points"] {
        connectors
            .ingest(
                source,
                &IngestOptions {
                    interval: None,
                    observer: None,
                    recorder: None,
                },
            )
            .await
            .unwrap();
        warehouse
            .load_source(source, &LoadScope::Pending)
            .await
            .unwrap();
    }
    Fixture {
        _dir: dir,
        ml: Ml::new(warehouse.clone()),
        warehouse,
    }
}

async fn fixture() -> Fixture {
    fixture_with("").await
}

async fn rows(f: &Fixture, sql: &str) -> Vec<Vec<Value>> {
    f.warehouse
        .reader()
        .await
        .unwrap()
        .rows(sql, &HashMap::new())
        .await
        .unwrap()
        .rows
}

fn csv(name: &str) -> Vec<Vec<String>> {
    std::fs::read_to_string(format!("{DATA}/{name}"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn logistic_regression_matches_scikit_learn() {
    let f = fixture().await;
    let report = f.ml.train("stars", jiff::Timestamp::now()).await.unwrap();
    assert_eq!(report.version, 1);
    assert_eq!(report.predictions, 2000);
    assert_eq!(report.metrics.converged, Some(true));
    assert!(!report.metrics.held_out);

    let ours: HashMap<String, f64> = rows(&f, "SELECT artist_id, probability FROM stars")
        .await
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_f64().unwrap()))
        .collect();
    let mut worst = 0.0f64;
    for r in csv("sklearn_logistic.csv") {
        let theirs: f64 = r[1].parse().unwrap();
        worst = worst.max((ours[&r[0]] - theirs).abs());
    }
    eprintln!("largest probability difference from scikit-learn: {worst:.2e}");
    assert!(worst < 1e-3, "largest probability difference {worst}");

    // Coefficients (scaled space) within 2 % of scikit-learn's.
    let saved = f.ml.latest("stars").unwrap().unwrap();
    let affluent_ml::Saved::LogisticRegression { model, .. } = &saved.saved else {
        panic!("a logistic regression")
    };
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DATA}/sklearn_logistic_coef.json")).unwrap(),
    )
    .unwrap();
    for (ours, theirs) in model.coef.iter().chain([&model.intercept]).zip(
        reference["coef"]
            .as_array()
            .unwrap()
            .iter()
            .chain([&reference["intercept"]]),
    ) {
        let theirs = theirs.as_f64().unwrap();
        eprintln!("coefficient {ours:.6} vs scikit-learn's {theirs:.6}");
        assert!(
            ((ours - theirs) / theirs).abs() < 0.02,
            "coefficient {ours} vs scikit-learn's {theirs}"
        );
    }
    // The metrics are in ml_models, and the label and a prediction beside each probability.
    let m = rows(
        &f,
        "SELECT version, kind, rows, train_rows, test_rows, accuracy, roc_auc FROM ml_models WHERE model = 'stars'",
    )
    .await;
    assert_eq!(m.len(), 1);
    assert_eq!(m[0][0], 1);
    assert_eq!(m[0][1], "logistic_regression");
    assert_eq!(m[0][2], 2000);
    assert!(m[0][6].as_f64().unwrap() > 0.9, "ROC AUC {:?}", m[0][6]);
    let star = rows(
        &f,
        "SELECT count(*) FROM stars WHERE is_star AND predicted AND model_version = 1",
    )
    .await;
    assert!(star[0][0].as_i64().unwrap() > 150, "{star:?}");
}

#[tokio::test]
async fn a_held_out_share_measures_the_model_and_the_same_seed_gives_the_same_model() {
    let f = fixture().await;
    let first =
        f.ml.train("stars_held_out", jiff::Timestamp::now())
            .await
            .unwrap();
    assert!(first.metrics.held_out);
    assert_eq!(first.metrics.test_rows, 400);
    assert_eq!(first.metrics.train_rows, 1600);
    let c = first.metrics.classification.clone().unwrap();
    assert_eq!(c.rows, 400);
    assert!(c.roc_auc.unwrap() > 0.9 && c.recall.unwrap() > 0.7, "{c:?}");
    let before = rows(
        &f,
        "SELECT artist_id, probability FROM stars_held_out ORDER BY artist_id",
    )
    .await;

    let second =
        f.ml.train("stars_held_out", jiff::Timestamp::now())
            .await
            .unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(second.metrics, first.metrics, "same data, same seed");
    let after = rows(
        &f,
        "SELECT artist_id, probability FROM stars_held_out ORDER BY artist_id",
    )
    .await;
    assert_eq!(before, after);
    let versions = rows(
        &f,
        "SELECT version FROM ml_models WHERE model = 'stars_held_out' ORDER BY version",
    )
    .await;
    assert_eq!(versions, vec![vec![Value::from(1)], vec![Value::from(2)]]);
    let latest = rows(&f, "SELECT DISTINCT model_version FROM stars_held_out").await;
    assert_eq!(
        latest,
        vec![vec![Value::from(2)]],
        "predictions replaced, not appended"
    );
}

#[tokio::test]
async fn knn_neighbours_are_scikit_learns() {
    let f = fixture().await;
    let report = f.ml.train("similar", jiff::Timestamp::now()).await.unwrap();
    assert_eq!(report.predictions, 2000 * 5);
    let mut ours: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rows(
        &f,
        "SELECT artist_id, neighbour_artist_id, rank, distance FROM similar",
    )
    .await
    {
        ours.entry(r[0].as_str().unwrap().to_string())
            .or_default()
            .insert(r[1].as_str().unwrap().to_string());
    }
    let mut theirs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in csv("sklearn_knn.csv") {
        theirs.entry(r[0].clone()).or_default().insert(r[2].clone());
    }
    assert_eq!(ours.len(), 2000);
    let differ: Vec<&String> = ours
        .keys()
        .filter(|k| ours.get(*k) != theirs.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "{} artists differ, e.g. {:?}",
        differ.len(),
        differ.first()
    );
}

#[tokio::test]
async fn a_holt_winters_forecast_is_as_good_as_statsmodels_ets() {
    let f = fixture().await;
    let report =
        f.ml.train("visits_forecast", jiff::Timestamp::now())
            .await
            .unwrap();
    assert_eq!(report.predictions, 2 * 28);
    assert!(
        report.metrics.skipped.is_empty(),
        "{:?}",
        report.metrics.skipped
    );
    let reference: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DATA}/statsmodels_ets.json")).unwrap(),
    )
    .unwrap();
    let theirs = reference["mean_mae"].as_f64().unwrap();
    let ours = report.metrics.mae.unwrap();
    eprintln!("holdout MAE {ours:.4} vs statsmodels' ExponentialSmoothing {theirs:.4}");
    assert!(
        ours <= theirs * 1.05,
        "holdout MAE {ours:.3} vs statsmodels' {theirs:.3}"
    );
    // The next 28 days of each agency, with intervals around the forecast.
    let days = rows(
        &f,
        "SELECT agency, min(day), max(day), count(*), bool_and(lower < forecast AND forecast < upper) FROM visits_forecast GROUP BY agency ORDER BY agency",
    )
    .await;
    assert_eq!(days.len(), 2);
    for d in &days {
        assert_eq!(d[1], "2024-12-30");
        assert_eq!(d[2], "2025-01-26");
        assert_eq!(d[3], 28);
        assert_eq!(d[4], true);
    }
    // Without Sundays (closed), the week stays aligned with the calendar: as good on the other
    // days (a season shifted by each missing day would be off by tens of visits).
    let closed =
        f.ml.train("visits_closed_sundays", jiff::Timestamp::now())
            .await
            .unwrap();
    let gaps = closed.metrics.mae.unwrap();
    eprintln!("holdout MAE without Sundays {gaps:.4}");
    assert!(gaps < theirs * 1.25, "{gaps} vs {theirs}");
    assert_eq!(
        closed.predictions,
        2 * 24,
        "no Sunday is forecast: none was observed"
    );

    let trend =
        f.ml.train("visits_trend", jiff::Timestamp::now())
            .await
            .unwrap();
    assert_eq!(trend.predictions, 2 * 7);
    assert!(
        trend.metrics.mae.unwrap() > ours,
        "a line misses the weekly cycle"
    );
}

/// Spearman's rank correlation (no ties in these scores).
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let ranks = |v: &[f64]| {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        for (rank, i) in idx.into_iter().enumerate() {
            r[i] = rank as f64;
        }
        r
    };
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let d2: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - y) * (x - y)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[tokio::test]
async fn an_isolation_forest_finds_the_outliers_scikit_learn_finds() {
    let f = fixture().await;
    let report =
        f.ml.train("outliers", jiff::Timestamp::now())
            .await
            .unwrap();
    assert_eq!(report.predictions, 1024);
    let ours: HashMap<String, (f64, bool)> = rows(&f, "SELECT point, score, anomaly FROM outliers")
        .await
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                (r[1].as_f64().unwrap(), r[2].as_bool().unwrap()),
            )
        })
        .collect();
    let truth: HashMap<String, bool> = csv("anomalies.csv")
        .into_iter()
        .map(|r| (r[0].clone(), r[4] == "1"))
        .collect();
    let theirs: Vec<(String, f64)> = csv("sklearn_isolation.csv")
        .into_iter()
        .map(|r| (r[0].clone(), r[1].parse().unwrap()))
        .collect();
    let y: Vec<bool> = theirs.iter().map(|(p, _)| truth[p]).collect();
    let sk: Vec<f64> = theirs.iter().map(|(_, s)| *s).collect();
    let us: Vec<f64> = theirs.iter().map(|(p, _)| ours[p].0).collect();
    let (auc_sk, auc_us) = (
        affluent_ml::fit::roc_auc(&sk, &y).unwrap(),
        affluent_ml::fit::roc_auc(&us, &y).unwrap(),
    );
    let rho = spearman(&sk, &us);
    eprintln!(
        "isolation forest: ROC AUC {auc_us:.4} vs scikit-learn's {auc_sk:.4}, rank correlation {rho:.3}"
    );
    assert!((auc_us - auc_sk).abs() < 0.01, "{auc_us} vs {auc_sk}");
    assert!(rho > 0.9, "rank correlation {rho}");
    // Every planted outlier is flagged, as scikit-learn flags them.
    let planted: Vec<&String> = truth.iter().filter(|(_, t)| **t).map(|(p, _)| p).collect();
    let flagged = planted.iter().filter(|p| ours[**p].1).count();
    let sk_flagged = planted
        .iter()
        .filter(|p| theirs.iter().any(|(q, s)| q == **p && *s > 0.5))
        .count();
    eprintln!(
        "flagged {flagged} of {} planted outliers (scikit-learn {sk_flagged})",
        planted.len()
    );
    assert!(
        flagged >= sk_flagged.saturating_sub(1),
        "{flagged} vs {sk_flagged}"
    );
}

#[tokio::test]
async fn a_monthly_series_steps_by_calendar_months() {
    let f = fixture().await;
    let report = f.ml.train("monthly", jiff::Timestamp::now()).await.unwrap();
    assert_eq!(report.predictions, 2 * 3);
    let months = rows(
        &f,
        "SELECT DISTINCT CAST(month AS VARCHAR) FROM monthly ORDER BY 1",
    )
    .await;
    assert_eq!(
        months,
        vec![
            vec![Value::from("2025-01-01T00:00:00Z")],
            vec![Value::from("2025-02-01T00:00:00Z")],
            vec![Value::from("2025-03-01T00:00:00Z")],
        ]
    );
}

#[tokio::test]
async fn a_saved_version_predicts_without_training() {
    let f = fixture().await;
    assert!(matches!(
        f.ml.predict("stars").await,
        Err(MlError::Untrained(_))
    ));
    f.ml.train("stars", jiff::Timestamp::now()).await.unwrap();
    let before = rows(
        &f,
        "SELECT artist_id, probability FROM stars ORDER BY artist_id",
    )
    .await;
    let applied = f.ml.predict("stars").await.unwrap();
    assert!(!applied.trained);
    assert_eq!(applied.version, 1);
    let after = rows(
        &f,
        "SELECT artist_id, probability FROM stars ORDER BY artist_id",
    )
    .await;
    assert_eq!(before, after);
    let versions = rows(&f, "SELECT count(*) FROM ml_models").await;
    assert_eq!(versions[0][0], 1, "predicting records no version");
}

#[tokio::test]
async fn with_retrain_a_change_soon_after_training_predicts_with_the_last_version() {
    let f = fixture_with(
        r#"
[ml.stars_hourly]
kind = "logistic_regression"
sql = "SELECT artist_id, fans_followers, popularity, is_star FROM artists"
entity = ["artist_id"]
features = ["fans_followers", "popularity"]
label = "is_star"
retrain = "1h"
"#,
    )
    .await;
    let report = |reports: Vec<affluent_ml::TrainReport>| {
        reports
            .into_iter()
            .find(|r| r.model == "stars_hourly")
            .expect("a model reading `artists` runs when it changes")
    };
    let first = report(f.ml.after_change(&["artists"]).await);
    assert!(first.trained, "no saved version yet: it trains");
    assert_eq!(first.version, 1);
    let second = report(f.ml.after_change(&["artists"]).await);
    assert!(
        !second.trained,
        "trained less than an hour ago: it predicts"
    );
    assert_eq!(second.version, 1);
    assert_eq!(second.predictions, first.predictions);
    // Every other model (no `retrain`) trained twice.
    let stars = rows(
        &f,
        "SELECT max(version) FROM ml_models WHERE model = 'stars'",
    )
    .await;
    assert_eq!(stars[0][0], 2);
    let hourly = rows(&f, "SELECT count(*), max(model_version) FROM stars_hourly").await;
    assert_eq!(hourly[0][0], first.predictions as i64);
    assert_eq!(hourly[0][1], 1);
}

#[tokio::test]
async fn bad_data_says_which_column_and_what_to_do() {
    let f = fixture_with(
        r#"
[ml.typo]
kind = "knn"
sql = "SELECT artist_id, popularity FROM artists"
entity = ["artist_id"]
features = ["popularty"]

[ml.one_class]
kind = "logistic_regression"
sql = "SELECT artist_id, popularity, 1 AS is_star FROM artists"
entity = ["artist_id"]
features = ["popularity"]
label = "is_star"

[ml.text]
kind = "knn"
sql = "SELECT artist_id, artist_id AS popularity FROM artists"
entity = ["artist_id"]
features = ["popularity"]

[ml.two_per_day]
kind = "forecast"
sql = "SELECT day, visits FROM series"
time = "day"
value = "visits"
method = "linear"
horizon = 7

[ml.short]
kind = "forecast"
sql = "SELECT agency, day, visits FROM series WHERE day < DATE '2024-01-10'"
entity = ["agency"]
time = "day"
value = "visits"
season = 7
horizon = 7
"#,
    )
    .await;
    let cases = [
        (
            "typo",
            "the feature column `popularty` is not in the query's columns (artist_id, popularity)",
        ),
        ("one_class", "needs both classes"),
        ("text", "column `popularity` is not a number in row 1"),
        ("short", "needs at least 15 observations (the series has 9)"),
        (
            "two_per_day",
            "has two values in one step (2024-01-01T00:00:00Z and 2024-01-01T00:00:00Z)",
        ),
    ];
    for (name, want) in cases {
        let err =
            f.ml.train(name, jiff::Timestamp::now())
                .await
                .unwrap_err()
                .to_string();
        assert!(err.contains(want), "{name}: {err}");
        assert!(err.contains(&format!("ml model `{name}`")), "{err}");
    }
    let unknown =
        f.ml.train("stras", jiff::Timestamp::now())
            .await
            .unwrap_err()
            .to_string();
    assert!(unknown.contains("no ml model named `stras`"), "{unknown}");
    // Nothing was written for them.
    assert!(f.ml.latest("typo").unwrap().is_none());
}

#[test]
fn config_errors_name_the_key_and_the_kind() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        r#"
[tables.t]
source = "s"
[sources.s]
type = "csv"
path = "s.csv"

[ml.a]
kind = "knn"
sql = "SELECT 1"
features = ["x"]
season = 7

[ml.b]
kind = "logistic_regression"
sql = "SELECT 1"
features = ["x"]
c = -1

[ml.t]
kind = "forecast"
sql = "SELECT 1"
time = "day"
value = "v"
horizon = 3

[ml.keyless]
kind = "knn"
sql = "SELECT 1"
features = ["x"]
retrain = "0s"

[ml.clash]
kind = "knn"
sql = "SELECT 1"
entity = ["rank"]
features = ["x"]
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("s.csv"), "x\n1\n").unwrap();
    let err = affluent_config::load_with_env(dir.path(), &Environment::from_map(BTreeMap::new()))
        .unwrap_err()
        .to_string();
    for want in [
        "`season` does not apply to a `knn` model (ml model `a`)",
        "ml model `b` (logistic_regression) needs `label`",
        "`c` must be a positive number",
        "ml model `t` (forecast) needs `season`",
        "`t` is already a table or model",
        "ml model `keyless` (knn) needs `entity`",
        "`retrain` must be longer than 0s",
        "entity column `rank` of ml model `clash` clashes with a column its predictions add",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

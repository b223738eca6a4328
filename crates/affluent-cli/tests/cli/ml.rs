//! `affluent ml`: a load trains the models reading what it changed, then the alerts reading
//! their predictions fire; train makes a version, predict applies the saved one, list shows
//! them.

use super::{affluent, text};

#[test]
fn a_load_trains_the_model_and_its_alert_reads_the_predictions() {
    let dir = tempfile::tempdir().unwrap();
    // Twenty ordinary readings around 10 and one far off.
    let mut csv = String::from("sensor,reading\n");
    for i in 0..20 {
        csv.push_str(&format!("s{i:02},{}\n", 10.0 + f64::from(i % 5) * 0.1));
    }
    csv.push_str("s99,55.0\n");
    std::fs::write(dir.path().join("readings.csv"), csv).unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        r#"
[sources.readings]
type = "csv"
path = "readings.csv"

[tables.readings]
source = "readings"
write = "replace"

[ml.odd_readings]
kind = "isolation_forest"
sql = "SELECT sensor, reading FROM readings"
entity = ["sensor"]
features = ["reading"]

[alerts.odd_sensor]
sql = "SELECT sensor, score FROM odd_readings"
entity = ["sensor"]
message = "{sensor} reads oddly (score {score:num})"
when = { value = "score", above = 0.6 }
"#,
    )
    .unwrap();
    let o = affluent(dir.path(), &["ml", "list"]);
    assert!(
        text(&o).contains("odd_readings (isolation_forest): never trained"),
        "{}",
        text(&o)
    );

    let o = affluent(dir.path(), &["ingest", "readings"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("odd_readings (isolation_forest) version 1: 21 predictions"),
        "{t}"
    );
    assert!(
        t.contains("odd_sensor: 21 entities, condition holds on 1, 1 fired"),
        "{t}"
    );
    assert!(t.contains("s99 reads oddly"), "{t}");

    let o = affluent(dir.path(), &["ml", "train", "odd_readings"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("version 2"), "{t}");
    assert!(
        t.contains("odd_sensor: 21 entities, condition holds on 1, 0 fired"),
        "{t}"
    );

    let o = affluent(dir.path(), &["ml", "predict", "odd_readings"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("version 2: 21 predictions"),
        "{}",
        text(&o)
    );

    let o = affluent(
        dir.path(),
        &[
            "query",
            "SELECT model, version, kind, train_rows FROM ml_models ORDER BY version",
        ],
    );
    let t = text(&o);
    assert_eq!(t.matches("odd_readings").count(), 2, "{t}");

    let o = affluent(dir.path(), &["ml", "list"]);
    assert!(
        text(&o).contains("odd_readings (isolation_forest): version 2"),
        "{}",
        text(&o)
    );

    let o = affluent(dir.path(), &["ml", "train", "odd_reading"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no ml model named `odd_reading`"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_model_reading_predictions_runs_after_each_training() {
    let dir = tempfile::tempdir().unwrap();
    let readings = |outliers: &[f64]| {
        let mut csv = String::from("sensor,reading\n");
        for i in 0..20 {
            csv.push_str(&format!("s{i:02},{}\n", 10.0 + f64::from(i % 5) * 0.1));
        }
        for (i, x) in outliers.iter().enumerate() {
            csv.push_str(&format!("x{i},{x}\n"));
        }
        csv
    };
    std::fs::write(dir.path().join("readings.csv"), readings(&[55.0])).unwrap();
    std::fs::write(
        dir.path().join("affluent.toml"),
        r#"
[sources.readings]
type = "csv"
path = "readings.csv"

[tables.readings]
source = "readings"
write = "replace"

[ml.odd_readings]
kind = "isolation_forest"
sql = "SELECT sensor, reading FROM readings"
entity = ["sensor"]
features = ["reading"]

[models.odd_count]
sql = "SELECT count(*) AS odd FROM odd_readings WHERE anomaly"
"#,
    )
    .unwrap();
    let one = |dir: &std::path::Path, sql: &str| {
        let o = affluent(dir, &["query", "--format", "csv", sql]);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .map(str::to_string)
    };
    // The model's count is the count of the current predictions.
    let follows = |dir: &std::path::Path| {
        let direct = one(dir, "SELECT count(*) FROM odd_readings WHERE anomaly");
        assert_eq!(one(dir, "SELECT odd FROM odd_count"), direct);
        direct
    };
    // Before any training the model waits for it (no error), and runs after it.
    let o = affluent(dir.path(), &["transform"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = affluent(dir.path(), &["ingest", "readings"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("odd_readings (isolation_forest) version 1"),
        "{t}"
    );
    assert!(t.contains("odd_count: 1 rows"), "{t}");
    let before = follows(dir.path());
    // New data (ten more outliers): trained again, and the model follows.
    let far: Vec<f64> = (0..10).map(|i| 100.0 + f64::from(i) * 50.0).collect();
    std::fs::write(dir.path().join("readings.csv"), readings(&far)).unwrap();
    let o = affluent(dir.path(), &["ingest", "readings"]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("odd_readings (isolation_forest) version 2"),
        "{t}"
    );
    assert_ne!(follows(dir.path()), before, "the predictions changed");
    // A training asked for by hand too.
    let o = affluent(dir.path(), &["ml", "train", "odd_readings"]);
    assert!(text(&o).contains("odd_count: 1 rows"), "{}", text(&o));
}

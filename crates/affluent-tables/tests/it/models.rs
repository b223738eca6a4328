//! SQL models, data-driven: every `tests/sql/NAME.sql` is a model of one project over the
//! records of `tests/sql/inputs.json`; its rows must equal `tests/sql/NAME.csv`.

use std::path::PathBuf;

use affluent_tables::LoadScope;

use crate::support::TestProject;

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sql")
}

fn sorted_lines(csv: &str) -> Vec<String> {
    let mut lines: Vec<String> = csv.lines().map(str::to_string).collect();
    if lines.len() > 1 {
        lines[1..].sort();
    }
    lines
}

async fn project_with_models() -> (TestProject, Vec<String>) {
    let mut names: Vec<String> = std::fs::read_dir(cases_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_suffix(".sql").map(str::to_string)
        })
        .collect();
    names.sort();
    let mut toml = String::from(
        r#"
[sources.inputs]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[tables.visits]
source = "inputs"
explode = "visits"
[tables.visits.columns]
agency = "agency"
day = { path = "day", type = "date" }
counter = { path = "counter", type = "int" }
count = { path = "count", type = "int" }

[tables.agencies]
source = "inputs"
explode = "agencies"
[tables.agencies.columns]
name = "name"
lat = { path = "lat", type = "float" }
lon = { path = "lon", type = "float" }
"#,
    );
    for name in &names {
        toml.push_str(&format!("\n[models.{name}]\nfile = \"sql/{name}.sql\"\n"));
    }
    let p = TestProject::new("");
    for name in &names {
        let sql = std::fs::read_to_string(cases_dir().join(format!("{name}.sql"))).unwrap();
        p.file(&format!("sql/{name}.sql"), &sql);
    }
    p.file("affluent.toml", &toml);
    let mut p = p;
    p.reopen();
    let inputs = std::fs::read(cases_dir().join("inputs.json")).unwrap();
    p.land("inputs", "r1", &inputs);
    p.warehouse
        .load_source("inputs", &LoadScope::Pending)
        .await
        .unwrap();
    (p, names)
}

#[tokio::test]
async fn sql_models_match_their_expected_rows() {
    let (p, names) = project_with_models().await;
    assert!(names.len() >= 4, "{names:?}");
    let order = p.warehouse.model_order().unwrap();
    let pos = |n: &str| order.iter().position(|o| o == n).unwrap();
    assert!(
        pos("clean_visits") < pos("daily") && pos("daily") < pos("a_moving"),
        "{order:?}"
    );

    let reports = p.warehouse.transform(&[], None).await.unwrap();
    assert_eq!(reports.len(), names.len());
    for name in &names {
        let expected = std::fs::read_to_string(cases_dir().join(format!("{name}.csv")))
            .unwrap_or_else(|_| panic!("tests/sql/{name}.csv is missing"));
        let actual = p.csv(&format!("SELECT * FROM {name}")).await;
        assert_eq!(
            sorted_lines(&actual),
            sorted_lines(&expected),
            "model {name}:\n{actual}"
        );
    }

    // Running again replaces, never appends.
    p.warehouse.transform(&[], None).await.unwrap();
    assert_eq!(p.count("daily").await, 7);
    // One model alone.
    let one = p
        .warehouse
        .transform(&["daily".to_string()], None)
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    let err = p
        .warehouse
        .transform(&["dayly".to_string()], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `daily`"), "{err}");
}

#[tokio::test]
async fn model_cycles_and_sql_errors_are_reported() {
    let p = TestProject::new("");
    p.file(
        "affluent.toml",
        r#"
[sources.s]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[models.a]
sql = "SELECT * FROM b"
[models.b]
sql = "SELECT * FROM a"
[models.c]
sql = "SELECT nope FROM d"
[models.d]
sql = "SELECT 1 AS one"
"#,
    );
    let mut p = p;
    p.reopen();
    let err = p.warehouse.model_order().unwrap_err().to_string();
    assert!(err.contains("cycle"), "{err}");
    let err = p
        .warehouse
        .transform(&["d".to_string(), "c".to_string()], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("cycle"), "{err}");
}

#[tokio::test]
async fn merge_models_upsert_on_their_key_within_the_interval() {
    let p = TestProject::new("");
    p.file(
        "affluent.toml",
        r#"
[sources.inputs]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[tables.events]
source = "inputs"
[tables.events.columns]
id = { path = "id", type = "int" }
at = { path = "at", type = "timestamp" }
value = { path = "value", type = "int" }

[models.recent]
sql = "SELECT id, value * 10 AS v FROM events WHERE at >= $interval_start AND at < $interval_end"
materialized = "merge"
primary_key = ["id"]

[models.broken]
sql = "SELECT nope FROM events"
"#,
    );
    let mut p = p;
    p.reopen();
    p.land(
        "inputs",
        "r1",
        br#"[{"id": 1, "at": "2024-01-01T10:00:00Z", "value": 1},
             {"id": 2, "at": "2024-01-02T10:00:00Z", "value": 2}]"#,
    );
    p.warehouse
        .load_source("inputs", &LoadScope::Pending)
        .await
        .unwrap();
    let day = |d: &str| {
        let start: jiff::Timestamp = format!("{d}T00:00:00Z").parse().unwrap();
        affluent_core::Interval::new(start, start + jiff::SignedDuration::from_hours(24)).unwrap()
    };
    let recent = ["recent".to_string()];
    p.warehouse
        .transform(&recent, Some(day("2024-01-01")))
        .await
        .unwrap();
    assert_eq!(
        p.csv("SELECT * FROM recent ORDER BY id").await,
        "id,v\n1,10\n"
    );
    p.warehouse
        .transform(&recent, Some(day("2024-01-02")))
        .await
        .unwrap();
    assert_eq!(
        p.csv("SELECT * FROM recent ORDER BY id").await,
        "id,v\n1,10\n2,20\n"
    );
    let r = p
        .warehouse
        .transform(&recent, Some(day("2024-01-02")))
        .await
        .unwrap();
    assert_eq!(
        r[0].merged,
        Some((0, 1)),
        "the same interval again updates, never duplicates"
    );
    assert_eq!(p.count("recent").await, 2);

    let err = p
        .warehouse
        .transform(&["broken".to_string()], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("model `broken`:"), "{err}");
    assert!(err.contains("nope"), "{err}");
}

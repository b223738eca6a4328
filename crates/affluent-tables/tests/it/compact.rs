//! Compaction: many small loads merged into few files, replaced files deleted, and nothing of
//! exactly-once, replay or lineage lost.

use affluent_tables::LoadScope;

use crate::support::TestProject;

const PROJECT: &str = r#"
[compaction]
files = 8
vacuum_after = "0s"

[sources.readings]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[tables.readings]
source = "readings"
[tables.readings.columns]
id = { path = "id", type = "int" }
value = { path = "value", type = "float" }

[tables.latest]
source = "readings"
write = "merge"
primary_key = ["id"]
[tables.latest.columns]
id = { path = "id", type = "int" }
value = { path = "value", type = "float" }
"#;

/// Parquet files in a table's folder, on disk.
fn parquet_files(p: &TestProject, table: &str) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| {
                        let path = e.path();
                        if path.is_dir() {
                            walk(&path)
                        } else {
                            usize::from(path.extension().is_some_and(|x| x == "parquet"))
                        }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&p.warehouse.table_dir(table).unwrap())
}

#[tokio::test]
async fn small_loads_are_merged_and_replaced_files_deleted_without_losing_a_row() {
    let p = TestProject::new(PROJECT);
    let mut compactions = 0;
    for i in 0..30 {
        p.land(
            "readings",
            &format!("r{i}"),
            format!(
                r#"[{{"id": {i}, "value": {i}.5}}, {{"id": {}, "value": 0.25}}]"#,
                i % 5
            )
            .as_bytes(),
        );
        let reports = p
            .warehouse
            .load_source("readings", &LoadScope::Pending)
            .await
            .unwrap();
        compactions += reports.iter().filter(|r| r.compacted.is_some()).count();
    }
    assert!(compactions >= 4, "{compactions} compactions");
    for table in ["readings", "latest"] {
        let files = parquet_files(&p, table);
        assert!(files <= 8, "{table}: {files} parquet files on disk");
    }
    let expected_rows = "n,d,s\n60,30,495\n";
    assert_eq!(
        p.csv("SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s FROM readings")
            .await,
        expected_rows
    );
    assert_eq!(p.scalar("SELECT count(*) FROM latest").await, "30");
    // Loading again takes nothing: the last load's transaction survived the compactions.
    let again = p
        .warehouse
        .load_source("readings", &LoadScope::Pending)
        .await
        .unwrap();
    assert!(again.iter().all(|r| r.entries == 0), "{again:?}");
    assert_eq!(p.count("readings").await, 60);
    // Every row still names its landing entry, and a replay rebuilds the same table.
    assert_eq!(
        p.scalar("SELECT count(DISTINCT _affluent_entry) FROM readings")
            .await,
        "30"
    );
    p.warehouse
        .load_source(
            "readings",
            &LoadScope::Replay {
                from: None,
                to: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        p.csv("SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s FROM readings")
            .await,
        expected_rows
    );
    // By hand: whatever the number of files, one file after.
    let report = p.warehouse.optimize("readings").await.unwrap().unwrap();
    assert_eq!(report.files_after, 1, "{report:?}");
    assert_eq!(parquet_files(&p, "readings"), 1);
    assert_eq!(p.count("readings").await, 60);
    let unknown = p
        .warehouse
        .optimize("readngs")
        .await
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("readings"), "{unknown}");
}

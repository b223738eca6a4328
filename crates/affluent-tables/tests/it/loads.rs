//! Loads: schema evolution, quarantine of values that do not cast, replays from landing alone,
//! read-only queries, exports.

use affluent_tables::{ExportFormat, LoadScope};

use crate::support::TestProject;

const PROJECT: &str = r#"
[sources.readings]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[tables.readings]
source = "readings"

[tables.typed]
source = "readings"
write = "merge"
primary_key = ["id"]
order_by = "at"
[tables.typed.columns]
id = { path = "id", type = "int" }
value = { path = "value", type = "float" }
at = { path = "at", type = "timestamp" }
"#;

async fn load(p: &TestProject) -> Vec<affluent_tables::LoadReport> {
    p.warehouse
        .load_source("readings", &LoadScope::Pending)
        .await
        .unwrap()
}

#[tokio::test]
async fn new_fields_become_nullable_columns() {
    let p = TestProject::new(PROJECT);
    p.land(
        "readings",
        "r1",
        br#"[{"id": 1, "value": 1.5, "at": "2024-01-01T00:00:00Z"}]"#,
    );
    load(&p).await;
    p.land(
        "readings",
        "r2",
        br#"[{"id": 2, "value": 2.5, "at": "2024-01-02T00:00:00Z", "station": {"name": "Nation"}}]"#,
    );
    load(&p).await;
    assert_eq!(
        p.csv("SELECT id, value, station__name FROM readings ORDER BY id")
            .await,
        "id,value,station__name\n1,1.5,\n2,2.5,Nation\n"
    );
    // An older record of the same key does not overwrite a newer one (`order_by`).
    p.land(
        "readings",
        "r3",
        br#"[{"id": 2, "value": 9.9, "at": "2023-12-31T00:00:00Z"}]"#,
    );
    p.land(
        "readings",
        "r4",
        br#"[{"id": 1, "value": 3.0, "at": "2024-02-01T00:00:00Z"}]"#,
    );
    load(&p).await;
    assert_eq!(
        p.csv("SELECT id, value FROM typed ORDER BY id").await,
        "id,value\n1,3.0\n2,2.5\n"
    );
}

#[tokio::test]
async fn values_that_do_not_cast_are_quarantined_once_with_their_reason() {
    let p = TestProject::new(PROJECT);
    let entry = p.land(
        "readings",
        "r1",
        br#"[{"id": 1, "value": 1.5, "at": "2024-01-01T00:00:00Z"},
             {"id": 2, "value": "n/a", "at": "2024-01-01T00:00:00Z"},
             {"id": "x", "value": 1, "at": "2024-01-01T00:00:00Z"},
             {"id": 4, "value": 1, "at": "yesterday"},
             {"value": 5}]"#,
    );
    let reports = load(&p).await;
    let typed = reports.iter().find(|r| r.table == "typed").unwrap();
    assert_eq!((typed.loaded, typed.quarantined), (1, 4), "{typed:?}");
    let raw = reports.iter().find(|r| r.table == "readings").unwrap();
    assert_eq!(
        (raw.loaded, raw.quarantined),
        (5, 0),
        "inferred: mixed values widen to text"
    );

    let rejects = p.warehouse.quarantine().list("readings").unwrap();
    assert_eq!(rejects.len(), 4, "{rejects:#?}");
    let by_field: Vec<(Option<&str>, &str)> = rejects
        .iter()
        .map(|r| (r.field.as_deref(), r.reason.as_str()))
        .collect();
    assert_eq!(
        by_field,
        [
            (Some("value"), "table `typed`: \"n/a\" is not a number"),
            (Some("id"), "table `typed`: \"x\" is not an integer"),
            (
                Some("at"),
                "table `typed`: \"yesterday\" is not a timestamp (ISO 8601)"
            ),
            (
                Some("id"),
                "table `typed`: primary key column `id` is missing or null"
            ),
        ]
    );
    assert!(rejects.iter().all(|r| r.entry_id == entry.entry_id));
    assert_eq!(rejects[0].location, "record 2");

    // A replay reads the entry again: the quarantine is rewritten, not doubled.
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
    assert_eq!(p.warehouse.quarantine().list("readings").unwrap().len(), 4);
    assert_eq!(p.count("typed").await, 1);
    assert_eq!(p.count("readings").await, 5);
}

#[tokio::test]
async fn replay_rebuilds_tables_from_landing_alone() {
    let p = TestProject::new(PROJECT);
    for i in 0..3 {
        p.land(
            "readings",
            &format!("r{i}"),
            format!(
                r#"[{{"id": {i}, "value": {i}.5, "at": "2024-01-0{}T00:00:00Z"}}]"#,
                i + 1
            )
            .as_bytes(),
        );
    }
    load(&p).await;
    assert_eq!(p.count("readings").await, 3);

    // The tables and their load records are lost: landing rebuilds them.
    std::fs::remove_dir_all(p.warehouse.tables_dir()).unwrap();
    std::fs::remove_dir_all(p.warehouse.project().data_dir.join("state/loads")).unwrap();
    let reports = p
        .warehouse
        .load_source(
            "readings",
            &LoadScope::Replay {
                from: None,
                to: None,
            },
        )
        .await
        .unwrap();
    assert!(reports.iter().all(|r| r.entries == 3), "{reports:?}");
    assert_eq!(p.count("readings").await, 3);
    assert_eq!(p.count("typed").await, 3);

    // Replaying part of the landing replaces those entries' rows: no duplicate.
    let from = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    p.warehouse
        .load_source(
            "readings",
            &LoadScope::Replay {
                from: Some(from),
                to: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(p.count("readings").await, 3);
    assert_eq!(p.count("typed").await, 3);
    // And the entries count as loaded: nothing is pending.
    let pending = load(&p).await;
    assert!(pending.iter().all(|r| r.entries == 0), "{pending:?}");
    let loaded = p
        .warehouse
        .loaded_by_every_table("readings")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.len(), 3);
}

#[tokio::test]
async fn queries_cannot_write_or_read_files() {
    let p = TestProject::new(PROJECT);
    p.land(
        "readings",
        "r1",
        br#"[{"id": 1, "value": 1.5, "at": "2024-01-01T00:00:00Z"}]"#,
    );
    load(&p).await;
    let outside = p.dir.path().join("stolen.csv");
    for sql in [
        format!("COPY (SELECT * FROM readings) TO '{}'", outside.display()),
        "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'".to_string(),
        "SELECT * FROM '/etc/passwd'".to_string(),
        "INSERT INTO readings SELECT * FROM readings".to_string(),
        "DROP TABLE readings".to_string(),
    ] {
        let err = p.warehouse.query(&sql).await.unwrap_err().to_string();
        assert!(!err.is_empty(), "{sql}");
    }
    assert!(!outside.exists());
    assert_eq!(p.count("readings").await, 1);
}

#[tokio::test]
async fn exports_write_csv_and_parquet_without_the_lineage_column() {
    let p = TestProject::new(PROJECT);
    p.land(
        "readings",
        "r1",
        br#"[{"id": 1, "value": 1.5, "at": "2024-01-01T00:00:00Z"}, {"id": 2, "value": 2.5, "at": "2024-01-01T00:00:00Z"}]"#,
    );
    load(&p).await;
    let csv = p.dir.path().join("out/typed.csv");
    let rows = p
        .warehouse
        .export("typed", ExportFormat::Csv, &csv)
        .await
        .unwrap();
    assert_eq!(rows, 2);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(text.lines().next(), Some("id,value,at"));
    assert_eq!(text.lines().count(), 3);
    let parquet = p.dir.path().join("typed.parquet");
    p.warehouse
        .export("typed", ExportFormat::Parquet, &parquet)
        .await
        .unwrap();
    let reader = datafusion::parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(&parquet).unwrap(),
    )
    .unwrap();
    use datafusion::parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
    let err = p
        .warehouse
        .export("typd", ExportFormat::Csv, &csv)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `typed`"), "{err}");
}

#[tokio::test]
async fn replace_tables_keep_the_newest_run_or_replace_by_value() {
    let p = TestProject::new(
        r#"
[sources.snapshot]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[tables.stations]
source = "snapshot"
write = "replace"

[tables.per_day]
source = "snapshot"
write = "replace"
replace_by = "day"
[tables.per_day.columns]
day = { path = "day", type = "date" }
station = "station"
"#,
    );
    let load = || async {
        p.warehouse
            .load_source("snapshot", &LoadScope::Pending)
            .await
            .unwrap()
    };
    p.land(
        "snapshot",
        "run1",
        br#"[{"station": "a", "day": "2024-01-01"}, {"station": "b", "day": "2024-01-01"}]"#,
    );
    load().await;
    // Two runs pending at once: the newest wins whole.
    p.land(
        "snapshot",
        "run2",
        br#"[{"station": "c", "day": "2024-01-02"}]"#,
    );
    p.land(
        "snapshot",
        "run3",
        br#"[{"station": "d", "day": "2024-01-01"}, {"station": "e", "day": "2024-01-03"}]"#,
    );
    load().await;
    assert_eq!(
        p.csv("SELECT station FROM stations ORDER BY station").await,
        "station\nd\ne\n"
    );
    // By value: the days present in new records are replaced, the others kept.
    assert_eq!(
        p.csv("SELECT day, station FROM per_day ORDER BY day, station")
            .await,
        "day,station\n2024-01-01,d\n2024-01-02,c\n2024-01-03,e\n"
    );
    // Nothing pending afterwards: older runs are never taken again.
    let again = load().await;
    assert!(again.iter().all(|r| r.entries == 0), "{again:?}");
    assert_eq!(p.count("stations").await, 2);
}

#[tokio::test]
async fn a_reader_runs_a_query_once_per_bound_values_and_a_new_reader_sees_new_commits() {
    use affluent_tables::Param;
    use std::collections::HashMap;
    let p = TestProject::new(PROJECT);
    p.land(
        "readings",
        "r1",
        br#"[{"id": 1, "value": 1.5, "at": "2024-01-01T00:00:00Z"},
             {"id": 2, "value": 2.5, "at": "2024-01-02T00:00:00Z"}]"#,
    );
    load(&p).await;
    let reader = p.warehouse.reader().await.unwrap();
    let sql = "SELECT id FROM typed WHERE id >= $min ORDER BY id";
    let min = |v: i64| HashMap::from([("min".to_string(), Param::Int(v))]);
    let first = reader.rows(sql, &min(1)).await.unwrap();
    let again = reader.rows(sql, &min(1)).await.unwrap();
    assert_eq!(first.rows, again.rows);
    assert_eq!(first.rows.len(), 2);
    assert_eq!(reader.rows(sql, &min(2)).await.unwrap().rows.len(), 1);
    let stats = reader.cache_stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.entries),
        (1, 2, 2),
        "{stats:?}"
    );
    assert!(stats.bytes > 0);
    // A new commit: a new reader sees it; the old one keeps answering for its versions.
    p.land(
        "readings",
        "r2",
        br#"[{"id": 3, "value": 3.5, "at": "2024-01-03T00:00:00Z"}]"#,
    );
    load(&p).await;
    let fresh = p.warehouse.reader().await.unwrap();
    assert_eq!(fresh.rows(sql, &min(1)).await.unwrap().rows.len(), 3);
    assert_eq!(reader.rows(sql, &min(1)).await.unwrap().rows.len(), 2);
}

#[tokio::test]
async fn an_empty_page_is_taken_by_a_commit_of_no_row() {
    let p = TestProject::new(PROJECT);
    p.land(
        "readings",
        "r1",
        br#"[{"id": 1, "value": 1.5, "at": "2024-01-01T00:00:00Z"}]"#,
    );
    load(&p).await;
    p.land("readings", "r2", b"[]");
    let reports = load(&p).await;
    for r in &reports {
        assert_eq!((r.entries, r.commits, r.loaded), (1, 1, 0), "{r}");
        assert!(r.errors.is_empty(), "{:?}", r.errors);
    }
    // Taken: the next load has nothing to do.
    for r in load(&p).await {
        assert_eq!(r.entries, 0, "{r}");
    }
    assert_eq!(p.count("readings").await, 1);
    assert_eq!(p.count("typed").await, 1);
}

#[tokio::test]
async fn inferred_types_widen_across_the_entries_of_one_commit() {
    let p = TestProject::new(PROJECT);
    // An integer in one entry, a number in the next, text in a third: one commit, one
    // inference over all of them, as if they were one entry.
    p.land("readings", "r1", br#"[{"id": 1, "v": 2, "w": 1}]"#);
    p.land("readings", "r2", br#"[{"id": 2, "v": 2.5, "w": "x"}]"#);
    p.land("readings", "r3", br#"[{"id": 3, "v": null, "w": null}]"#);
    let reports = load(&p).await;
    let readings = reports.iter().find(|r| r.table == "readings").unwrap();
    assert_eq!((readings.commits, readings.loaded), (1, 3), "{readings}");
    let csv = p
        .csv("SELECT id, v, w, arrow_typeof(v) AS tv, arrow_typeof(w) AS tw FROM readings ORDER BY id")
        .await;
    assert_eq!(
        csv,
        "id,v,w,tv,tw\n1,2.0,1,Float64,Utf8View\n2,2.5,x,Float64,Utf8View\n3,,,Float64,Utf8View\n"
    );
}

#[tokio::test]
async fn a_reject_past_the_first_chunk_keeps_its_record_number() {
    let p = TestProject::new(PROJECT);
    // More records than one mapping chunk (16,384): the bad one is record 20,000 of the entry.
    let mut records: Vec<serde_json::Value> = (1..20_000)
        .map(|i| serde_json::json!({"id": i, "value": 1.0, "at": "2024-01-01T00:00:00Z"}))
        .collect();
    records.push(serde_json::json!({"id": 20_000, "value": "n/a", "at": "2024-01-01T00:00:00Z"}));
    p.land("readings", "r1", &serde_json::to_vec(&records).unwrap());
    let reports = load(&p).await;
    let typed = reports.iter().find(|r| r.table == "typed").unwrap();
    assert_eq!((typed.loaded, typed.quarantined), (19_999, 1), "{typed:?}");
    let rejects = p.warehouse.quarantine().list("readings").unwrap();
    assert_eq!(rejects.len(), 1);
    assert_eq!(rejects[0].location, "record 20000");
}

/// A stream reads the rows a version added as its events, in fetch order: a commit of more
/// rows than DataFusion's batch size (8,192), whose entries come in several pieces that a
/// parallel write would store in no fixed order, is read back as it was fetched, entry after
/// entry and record after record.
#[tokio::test]
async fn a_commit_of_many_rows_is_read_back_as_events_in_fetch_order() {
    use affluent_tables::events::{Commit, EventColumns};
    let p = TestProject::new(PROJECT);
    // Each entry larger than a mapping chunk (16,384 records): its rows come in several pieces.
    let (entries, per_entry) = (3, 40_000);
    for e in 0..entries {
        let records: Vec<String> = (0..per_entry)
            .map(|i| {
                let n = e * per_entry + i;
                format!(r#"{{"id": {n}, "value": {n}, "at": "2024-01-01T00:00:00Z"}}"#)
            })
            .collect();
        p.land(
            "readings",
            &format!("r{e}"),
            format!("[{}]", records.join(",")).as_bytes(),
        );
        // Entry ids start with their fetch time (milliseconds).
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let reports = load(&p).await;
    let report = reports.iter().find(|r| r.table == "readings").unwrap();
    assert_eq!(
        (report.entries, report.loaded, report.commits),
        (3, 120_000, 1),
        "{report:?}"
    );
    let columns = EventColumns {
        key: "id".into(),
        time: "at".into(),
        values: vec!["value".into()],
    };
    let expected: Vec<Option<f64>> = (0..entries * per_entry).map(|n| Some(n as f64)).collect();
    let values = |events: &[affluent_tables::events::Event]| -> Vec<Option<f64>> {
        events.iter().map(|e| e.values[0]).collect()
    };
    match p
        .warehouse
        .commit_events("readings", 0, &columns)
        .await
        .unwrap()
    {
        Commit::Events(events) => assert!(
            values(&events.events) == expected,
            "version 0 is not read back in fetch order"
        ),
        Commit::Rewritten(why) => panic!("{why}"),
    }
    let (_, events) = p
        .warehouse
        .table_events("readings", &columns)
        .await
        .unwrap()
        .unwrap();
    assert!(
        values(&events.events) == expected,
        "the table is not read back in fetch order"
    );
}

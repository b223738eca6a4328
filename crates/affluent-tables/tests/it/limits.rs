//! The bounds of `[query]` against the queries that used to take a process down: each attack
//! ends with the error of its bound (small limits, so that each ends fast), and the warehouse and
//! its readers go on answering afterwards.

use std::collections::HashMap;

use affluent_tables::{ExportFormat, LoadScope, TableError};

use crate::support::TestProject;

/// A project whose queries have small bounds.
fn bounded(extra: &str) -> TestProject {
    TestProject::new(&format!(
        r#"
[sources.readings]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[tables.readings]
source = "readings"

[query]
memory = "64MiB"
timeout = "2s"
max_rows = 1000
{extra}
"#
    ))
}

async fn query_err(p: &TestProject, sql: &str) -> TableError {
    match p.warehouse.query(sql).await {
        Ok(batches) => panic!(
            "{sql} returned {} rows instead of failing",
            batches.iter().map(|b| b.num_rows()).sum::<usize>()
        ),
        Err(e) => e,
    }
}

async fn reader_err(p: &TestProject, sql: &str) -> TableError {
    let reader = p.warehouse.reader().await.unwrap();
    match reader.rows(sql, &HashMap::new()).await {
        Ok(rows) => panic!("{sql} returned {} rows instead of failing", rows.rows.len()),
        Err(e) => e,
    }
}

/// The warehouse still answers.
async fn still_answers(p: &TestProject) {
    assert_eq!(p.scalar("SELECT 40 + 2").await, "42");
    let reader = p.warehouse.reader().await.unwrap();
    let rows = reader
        .rows("SELECT 1 AS one", &HashMap::new())
        .await
        .unwrap();
    assert_eq!(rows.rows, vec![vec![serde_json::json!(1)]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_queries_stop_at_the_timeout() {
    let p = bounded("");
    for sql in [
        // 1e11 rows: hours of counting.
        "SELECT count(*) FROM range(100000000000)",
        // A recursive CTE without an end, one row per step: its memory stays flat.
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) FROM t",
    ] {
        for e in [query_err(&p, sql).await, reader_err(&p, sql).await] {
            assert!(matches!(e, TableError::Timeout { .. }), "{sql}: {e:?}");
            assert!(e.is_limit(), "{e:?}");
            let message = e.to_string();
            assert!(
                message.contains("query stopped after 2s, the limit of `timeout` in [query]"),
                "{message}"
            );
            assert!(message.contains("raise `timeout`"), "{message}");
        }
    }
    still_answers(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregations_past_the_memory_limit_stop_with_a_memory_error() {
    let p = bounded("");
    let sql = "SELECT cardinality(array_agg(value)) FROM range(1000000000)";
    for e in [query_err(&p, sql).await, reader_err(&p, sql).await] {
        assert!(matches!(e, TableError::Memory { .. }), "{e:?}");
        assert!(e.is_limit());
        assert!(
            e.to_string().contains(
                "query needs more than 64MiB of memory, the limit of `memory` in [query]"
            ),
            "{e}"
        );
        // The engine's account of the memory stays in the cause, for logs.
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(cause.contains("Resources exhausted"), "{cause}");
    }
    still_answers(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_that_build_huge_values_fail_before_allocating() {
    let p = bounded("");
    // Each of these allocated gigabytes in one call, outside the memory pool.
    for sql in [
        "SELECT length(repeat('x', 2000000000))",
        "SELECT length(lpad('x', 2000000000))",
        "SELECT length(rpad('x', 2000000000, 'yz'))",
        "SELECT cardinality(array_repeat(1, 2000000000))",
        "SELECT cardinality(range(2000000000))",
        "SELECT cardinality(generate_series(1, 2000000000))",
        // Row by row too: 100 rows of 1 MB each.
        "SELECT length(repeat('x', 1000000 + value)) FROM range(100)",
    ] {
        let e = query_err(&p, sql).await;
        assert!(matches!(e, TableError::Memory { .. }), "{sql}: {e:?}");
        assert!(e.to_string().contains("the limit of `memory`"), "{e}");
        let cause = std::error::Error::source(&e).unwrap().to_string();
        assert!(
            cause.contains("would build") && cause.contains("more than the query's memory limit"),
            "{sql}: {cause}"
        );
    }
    // Below the limit they work as before, under their own names and aliases.
    assert_eq!(p.scalar("SELECT length(repeat('ab', 1000))").await, "2000");
    assert_eq!(p.scalar("SELECT lpad('7', 3, '0')").await, "007");
    assert_eq!(p.scalar("SELECT rpad('7', 3, '0')").await, "700");
    assert_eq!(
        p.scalar("SELECT cardinality(list_repeat('a', 3))").await,
        "3"
    );
    assert_eq!(p.scalar("SELECT cardinality(range(1, 11, 2))").await, "5");
    assert_eq!(
        p.scalar("SELECT cardinality(generate_series(1, 10))").await,
        "10"
    );
    assert_eq!(
        p.scalar("SELECT sum(length(repeat('x', value))) FROM range(5)")
            .await,
        "10"
    );
    still_answers(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_of_the_engine_is_an_error_and_the_process_goes_on() {
    let p = bounded("");
    // A 1 MB constant spread over 5,000 rows is 5 GB in one array: its offsets overflow i32 and
    // arrow panics ("offset overflow") before allocating. The first panics in the task that runs
    // the query, the second in a task of the engine.
    for sql in [
        "SELECT s FROM (SELECT repeat('x', 1000000) AS s FROM range(5000))",
        "SELECT string_agg(s, ',') FROM (SELECT repeat('x', 1000000) AS s FROM range(5000))",
    ] {
        for e in [query_err(&p, sql).await, reader_err(&p, sql).await] {
            assert!(matches!(e, TableError::Engine { .. }), "{sql}: {e:?}");
            assert!(!e.is_limit());
            let message = e.to_string();
            assert!(
                message.starts_with("query failed inside the query engine (")
                    && message.contains("offset overflow")
                    && message.ends_with("it was stopped, nothing else is affected"),
                "{message}"
            );
        }
    }
    still_answers(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_past_max_rows_or_the_memory_limit_are_errors_not_cut() {
    let p = bounded("");
    assert_eq!(
        p.scalar("SELECT count(*) FROM (SELECT * FROM range(1000))")
            .await,
        "1000"
    );
    assert_eq!(
        p.warehouse
            .query("SELECT * FROM range(1000)")
            .await
            .unwrap()
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        1000
    );
    let sql = "SELECT * FROM range(100000000000)";
    for e in [query_err(&p, sql).await, reader_err(&p, sql).await] {
        assert!(
            matches!(e, TableError::TooManyRows { limit: 1000, .. }),
            "{e:?}"
        );
        assert!(e.is_limit());
        assert!(
            e.to_string().contains(
                "query returns more than 1000 rows, the limit of `max_rows` in [query] of affluent.toml: add a LIMIT or aggregate"
            ),
            "{e}"
        );
    }
    // The dashboard's pages and downloads keep the whole result: the same bound.
    let reader = p.warehouse.reader().await.unwrap();
    let none = HashMap::new();
    let e = reader
        .rows_window("SELECT * FROM range(1001)", &none, 0, 10)
        .await
        .unwrap_err();
    assert!(matches!(e, TableError::TooManyRows { .. }), "{e:?}");
    let e = reader
        .csv("SELECT * FROM range(1001)", &none)
        .await
        .unwrap_err();
    assert!(matches!(e, TableError::TooManyRows { .. }), "{e:?}");
    let (page, total) = reader
        .rows_window("SELECT * FROM range(1000)", &none, 990, 10)
        .await
        .unwrap();
    assert_eq!((page.rows.len(), total), (10, 1000));

    // Rows kept for a result count against the memory limit: 100 values of 1 MB.
    let sql = "SELECT repeat('x', 1000000) AS s FROM range(100)";
    for e in [query_err(&p, sql).await, reader_err(&p, sql).await] {
        assert!(matches!(e, TableError::Memory { .. }), "{e:?}");
        assert!(e.to_string().contains("the limit of `memory`"), "{e}");
    }
    still_answers(&p).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_stream_without_the_row_cap() {
    let p = bounded("");
    p.land(
        "readings",
        "r1",
        serde_json::to_string(
            &(0..2500)
                .map(|i| serde_json::json!({"id": i, "value": i as f64 / 2.0}))
                .collect::<Vec<_>>(),
        )
        .unwrap()
        .as_bytes(),
    );
    p.warehouse
        .load_source("readings", &LoadScope::Pending)
        .await
        .unwrap();
    // Past max_rows (1000) for a query...
    let e = query_err(&p, "SELECT * FROM readings").await;
    assert!(matches!(e, TableError::TooManyRows { .. }), "{e:?}");
    // ...but an export writes every row.
    for (format, file) in [
        (ExportFormat::Csv, "out/readings.csv"),
        (ExportFormat::Parquet, "out/readings.parquet"),
    ] {
        let out = p.dir.path().join(file);
        let rows = p.warehouse.export("readings", format, &out).await.unwrap();
        assert_eq!(rows, 2500);
    }
    let csv = std::fs::read_to_string(p.dir.path().join("out/readings.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2501);
    assert!(csv.starts_with("id,value\n"), "{}", &csv[..40]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_get_the_memory_pool_and_a_timeout_only_when_configured() {
    let endless = "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT count(*) AS n FROM t";
    let p = bounded(&format!(
        r#"model_timeout = "2s"
model_memory = "64MiB"

[models.endless]
sql = "{endless}"

[models.hungry]
sql = "SELECT cardinality(array_agg(value)) AS n FROM range(1000000000)"

[models.fine]
sql = "SELECT count(*) AS n FROM range(5000)"
"#
    ));
    let e = p
        .warehouse
        .transform(&["endless".to_string()], None)
        .await
        .unwrap_err();
    assert!(matches!(e, TableError::Timeout { .. }), "{e:?}");
    assert!(
        e.to_string()
            .contains("model `endless` stopped after 2s, the limit of `model_timeout` in [query]"),
        "{e}"
    );
    let e = p
        .warehouse
        .transform(&["hungry".to_string()], None)
        .await
        .unwrap_err();
    assert!(matches!(e, TableError::Memory { .. }), "{e:?}");
    assert!(
        e.to_string().contains(
            "model `hungry` needs more than 64MiB of memory, the limit of `model_memory`"
        ),
        "{e}"
    );
    // Models are not bound by the read queries' max_rows (1000).
    let reports = p
        .warehouse
        .transform(&["fine".to_string()], None)
        .await
        .unwrap();
    assert_eq!(reports[0].rows, 1);
    assert_eq!(p.scalar("SELECT n FROM fine").await, "5000");
}

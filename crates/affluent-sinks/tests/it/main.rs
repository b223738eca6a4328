//! The PostgreSQL sink against the machine's PostgreSQL (`AFFLUENT_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`): each Delta version written once, changes only
//! where a key allows it, whole tables mirrored, the schema created and evolved, conflicts and
//! bad connections refused with the warehouse left as it was. Each test writes to a schema of
//! its own.

#![allow(clippy::unwrap_used)] // tests fail loudly

use std::collections::BTreeMap;
use std::sync::Arc;

use affluent_config::Environment;
use affluent_landing::NewEntry;
use affluent_sinks::{SinkError, Sinks, TableSync};
use affluent_sources::Connectors;
use affluent_tables::query::{OutputFormat, render};
use affluent_tables::{LoadScope, Warehouse};
use sqlx::Row;
use sqlx::postgres::PgPoolOptions;

mod connect;

fn pg_url() -> String {
    std::env::var("AFFLUENT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

const BASE: &str = r#"
[sources.points]
type = "rest"
client.base_url = "http://127.0.0.1:9/"
[sources.log]
type = "rest"
client.base_url = "http://127.0.0.1:9/"
[sources.daily]
type = "rest"
client.base_url = "http://127.0.0.1:9/"

[tables.points]
source = "points"
write = "merge"
primary_key = ["id"]

[tables.log]
source = "log"

[tables.daily]
source = "daily"
write = "replace"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    warehouse: Warehouse,
    schema: String,
    pool: sqlx::PgPool,
    run: usize,
}

impl Fixture {
    async fn new(test: &str) -> Self {
        Self::with_url(test, &pg_url(), "").await
    }

    async fn with_url(test: &str, url: &str, extra: &str) -> Self {
        let schema = format!("sink_it_{test}_{}", std::process::id());
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&pg_url())
            .await
            .unwrap();
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&pool)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("affluent.toml"),
            format!(
                "{BASE}\n[sinks.warehouse]\ntype = \"postgres\"\nurl = \"${{PG_URL}}\"\nschema = \"{schema}\"\ntables = [\"points\", \"log\", \"daily\"]\nkeys = {{ daily = [\"day\"] }}\n{extra}"
            ),
        )
        .unwrap();
        let env = Environment::from_map(BTreeMap::from([("PG_URL".to_string(), url.to_string())]));
        let project =
            affluent_config::load_with_env(dir.path(), &env).unwrap_or_else(|e| panic!("{e}"));
        let warehouse = Warehouse::new(Arc::new(Connectors::new(project).unwrap()));
        Self {
            _dir: dir,
            warehouse,
            schema,
            pool,
            run: 0,
        }
    }

    /// Lands records for a table's source and loads the table.
    async fn land(&mut self, table: &str, records: serde_json::Value) {
        self.run += 1;
        self.warehouse
            .landing()
            .write(
                NewEntry {
                    source: table.into(),
                    run_id: format!("r{}", self.run),
                    kind: "http".into(),
                    url: format!("http://127.0.0.1:9/{table}"),
                    method: Some("GET".into()),
                    request_body: None,
                    vars: BTreeMap::new(),
                    page: 0,
                    status: 200,
                    headers: BTreeMap::new(),
                    fetched_at: jiff::Timestamp::now(),
                    interval: None,
                },
                serde_json::to_vec(&records).unwrap().as_slice(),
            )
            .unwrap();
        let reports = self
            .warehouse
            .load_table(table, &LoadScope::Pending)
            .await
            .unwrap();
        assert!(reports.errors.is_empty(), "{:?}", reports.errors);
    }

    async fn sync(&self) -> Vec<Result<TableSync, SinkError>> {
        Sinks::new(self.warehouse.clone()).run(&[]).await.unwrap()
    }

    async fn sync_ok(&self) -> BTreeMap<String, TableSync> {
        self.sync()
            .await
            .into_iter()
            .map(|r| {
                let s = r.unwrap_or_else(|e| panic!("{}", affluent_core::error_chain(&e)));
                (s.table.clone(), s)
            })
            .collect()
    }

    /// A PostgreSQL table's rows as text, sorted (columns in `columns` order).
    async fn pg_rows(&self, table: &str, columns: &str) -> Vec<String> {
        let rows = sqlx::query(&format!(
            "SELECT concat_ws('|', {}) FROM {}.{table}",
            columns
                .split(',')
                .map(|c| format!("coalesce(({})::text, 'NULL')", c.trim()))
                .collect::<Vec<_>>()
                .join(", "),
            self.schema
        ))
        .fetch_all(&self.pool)
        .await
        .unwrap();
        let mut out: Vec<String> = rows.iter().map(|r| r.get::<String, _>(0)).collect();
        out.sort();
        out
    }

    /// The same rows read from the Delta table.
    async fn delta_rows(&self, table: &str, columns: &str) -> Vec<String> {
        let sql = format!(
            "SELECT concat_ws('|', {}) AS r FROM {table}",
            columns
                .split(',')
                .map(|c| format!("coalesce(CAST(({}) AS VARCHAR), 'NULL')", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let text = render(
            &self.warehouse.query(&sql).await.unwrap(),
            OutputFormat::Json,
        )
        .unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let mut out: Vec<String> = rows
            .iter()
            .map(|r| r["r"].as_str().unwrap().to_string())
            .collect();
        out.sort();
        out
    }

    async fn progress(&self, table: &str) -> Option<i64> {
        sqlx::query_scalar(&format!(
            "SELECT delta_version FROM {}.affluent_sink_progress WHERE sink = 'warehouse' AND table_name = $1",
            self.schema
        ))
        .bind(table)
        .fetch_optional(&self.pool)
        .await
        .unwrap()
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {}.{table}", self.schema))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn drop_schema(&self) {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_merge_table_is_written_once_per_version_then_by_its_changes() {
    let mut f = Fixture::new("merge").await;
    f.land(
        "points",
        serde_json::json!([
            {"id": 1, "name": "a", "v": 1.5},
            {"id": 2, "name": "tab\there\nand a \\ backslash", "v": null},
            {"id": 3, "name": "c", "v": 3.25},
        ]),
    )
    .await;
    let first = f.sync_ok().await;
    let points = &first["points"];
    assert_eq!(points.scope, "whole");
    assert_eq!((points.rows_sent, points.rows_written), (3, 3));
    assert_eq!(first["log"].scope, "not written yet");
    let cols = "id, name, CAST(v * 1000 AS BIGINT)";
    assert_eq!(
        f.pg_rows("points", cols).await,
        f.delta_rows("points", cols).await
    );
    assert_eq!(f.pg_rows("points", cols).await.len(), 3);
    let version = f.warehouse.versions().await["points"];
    assert_eq!(f.progress("points").await, version);

    // Nothing new: nothing sent.
    let again = f.sync_ok().await;
    assert_eq!(again["points"].scope, "up to date");
    assert_eq!(again["points"].rows_sent, 0);

    // An update and an insert: only the files the merge wrote are read, and of their rows
    // only the changed ones are written.
    f.land(
        "points",
        serde_json::json!([{"id": 2, "name": "B", "v": 2.0}, {"id": 4, "name": "d", "v": 4.0}]),
    )
    .await;
    let next = f.sync_ok().await;
    let points = &next["points"];
    assert_eq!(points.scope, "changes", "{points:?}");
    assert_eq!(points.previous, version);
    assert_eq!(points.rows_written, 2, "{points:?}");
    assert_eq!(points.rows_removed, 0);
    let pg = f.pg_rows("points", cols).await;
    assert_eq!(pg, f.delta_rows("points", cols).await);
    assert_eq!(pg, ["1|a|1500", "2|B|2000", "3|c|3250", "4|d|4000"]);
    assert_eq!(
        f.progress("points").await,
        f.warehouse.versions().await["points"]
    );

    // A table dropped in PostgreSQL is written again whole.
    sqlx::query(&format!("DROP TABLE {}.points", f.schema))
        .execute(&f.pool)
        .await
        .unwrap();
    let rewritten = f.sync_ok().await;
    assert_eq!(rewritten["points"].scope, "whole");
    assert_eq!(
        f.pg_rows("points", cols).await,
        f.delta_rows("points", cols).await
    );

    // A compaction moves rows without changing them: read as changes, written as none.
    for id in [5, 6] {
        f.land(
            "points",
            serde_json::json!([{"id": id, "name": "new", "v": 1.0}]),
        )
        .await;
    }
    f.sync_ok().await;
    let before = f.warehouse.versions().await["points"];
    assert!(f.warehouse.optimize("points").await.unwrap().is_some());
    assert!(f.warehouse.versions().await["points"] > before);
    let compacted = f.sync_ok().await;
    assert_eq!(
        compacted["points"].scope, "changes",
        "{:?}",
        compacted["points"]
    );
    assert_eq!(
        compacted["points"].rows_written, 0,
        "{:?}",
        compacted["points"]
    );
    assert_eq!(f.count("points").await, 6);
    assert_eq!(
        f.pg_rows("points", cols).await,
        f.delta_rows("points", cols).await
    );
    f.drop_schema().await;
}

#[tokio::test]
async fn tables_without_a_key_and_replaced_tables_are_mirrored_whole() {
    let mut f = Fixture::new("mirror").await;
    f.land("log", serde_json::json!([{"msg": "one"}, {"msg": "two"}]))
        .await;
    f.land(
        "daily",
        serde_json::json!([{"day": "d1", "n": 1}, {"day": "d2", "n": 2}]),
    )
    .await;
    f.sync_ok().await;
    f.land("log", serde_json::json!([{"msg": "three"}])).await;
    f.land(
        "daily",
        serde_json::json!([{"day": "d2", "n": 5}, {"day": "d3", "n": 1}]),
    )
    .await;
    let second = f.sync_ok().await;
    // The log has no key: replaced whole, never doubled.
    assert_eq!(second["log"].scope, "whole");
    assert_eq!(
        (second["log"].rows_removed, second["log"].rows_written),
        (2, 3)
    );
    assert_eq!(f.pg_rows("log", "msg").await, ["one", "three", "two"]);
    // The daily table was replaced: the day it lost is removed, the others upserted.
    assert_eq!(second["daily"].scope, "whole");
    assert_eq!(second["daily"].rows_removed, 1);
    assert_eq!(f.pg_rows("daily", "day, n").await, ["d2|5", "d3|1"]);
    assert_eq!(
        f.pg_rows("daily", "day, n").await,
        f.delta_rows("daily", "day, n").await
    );
    f.drop_schema().await;
}

#[tokio::test]
async fn new_columns_are_added_and_a_type_conflict_leaves_the_warehouse_as_it_was() {
    let mut f = Fixture::new("schema").await;
    f.land("points", serde_json::json!([{"id": 1, "name": "a"}]))
        .await;
    f.sync_ok().await;
    f.land(
        "points",
        serde_json::json!([{"id": 2, "name": "b", "extra": "x"}]),
    )
    .await;
    let evolved = f.sync_ok().await;
    assert_eq!(
        evolved["points"].schema_changes,
        ["added column extra text"],
        "{:?}",
        evolved["points"]
    );
    // A column PostgreSQL lacked: the rows not changed since are written again too.
    assert_eq!(evolved["points"].scope, "whole");

    // A narrower column (made by hand) is widened to the table's type.
    sqlx::query(&format!(
        "ALTER TABLE {}.points ALTER COLUMN id TYPE integer",
        f.schema
    ))
    .execute(&f.pool)
    .await
    .unwrap();
    f.land(
        "points",
        serde_json::json!([{"id": 1, "name": "A", "extra": "z"}]),
    )
    .await;
    let widened = f.sync_ok().await;
    assert_eq!(
        widened["points"].schema_changes,
        ["widened column id from integer to bigint"],
        "{:?}",
        widened["points"]
    );
    assert_eq!(widened["points"].scope, "changes");
    f.land(
        "points",
        serde_json::json!([{"id": 1, "name": "a", "extra": null}]),
    )
    .await;
    f.sync_ok().await;
    assert_eq!(
        f.pg_rows("points", "id, name, extra").await,
        ["1|a|NULL", "2|b|x"]
    );

    // Someone changes a column in PostgreSQL to a type the table's values do not fit.
    sqlx::query(&format!(
        "ALTER TABLE {}.points ALTER COLUMN name TYPE bytea USING convert_to(name, 'UTF8')",
        f.schema
    ))
    .execute(&f.pool)
    .await
    .unwrap();
    let before = f.progress("points").await;
    f.land(
        "points",
        serde_json::json!([{"id": 3, "name": "c", "extra": "y"}]),
    )
    .await;
    let results = f.sync().await;
    let err = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("the conflict is an error");
    let text = affluent_core::error_chain(err);
    assert!(
        text.contains("column `name` is bytea in PostgreSQL but holds text values")
            && text.contains("nothing of this version was written"),
        "{text}"
    );
    assert_eq!(f.count("points").await, 2);
    assert_eq!(f.progress("points").await, before);

    // Fixed in PostgreSQL, the next run writes the version.
    sqlx::query(&format!(
        "ALTER TABLE {}.points ALTER COLUMN name TYPE text USING convert_from(name, 'UTF8')",
        f.schema
    ))
    .execute(&f.pool)
    .await
    .unwrap();
    f.sync_ok().await;
    assert_eq!(
        f.pg_rows("points", "id, name, extra").await,
        ["1|a|NULL", "2|b|x", "3|c|y"]
    );
    f.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_at_once_write_each_row_once() {
    let mut f = Fixture::new("writers").await;
    let rows: Vec<serde_json::Value> = (0..5000)
        .map(|i| serde_json::json!({"id": i, "name": format!("p{i}"), "v": i as f64 / 4.0}))
        .collect();
    f.land("points", serde_json::Value::Array(rows)).await;
    f.land("log", serde_json::json!([{"msg": "one"}])).await;
    let (one, other) = (
        Sinks::new(f.warehouse.clone()),
        Sinks::new(f.warehouse.clone()),
    );
    let (a, b) = tokio::join!(one.run(&[]), other.run(&[]));
    let all: Vec<TableSync> = a
        .unwrap()
        .into_iter()
        .chain(b.unwrap())
        .map(|r| r.unwrap())
        .collect();
    // One wrote each table, the other found it up to date.
    for table in ["points", "log"] {
        let scopes: Vec<&str> = all
            .iter()
            .filter(|s| s.table == table)
            .map(|s| s.scope.as_str())
            .collect();
        assert!(
            scopes.contains(&"whole") && scopes.contains(&"up to date"),
            "{table}: {scopes:?}"
        );
    }
    assert_eq!(f.count("points").await, 5000);
    assert_eq!(f.count("log").await, 1);
    f.drop_schema().await;
}

#[tokio::test]
async fn a_sink_without_a_url_is_off_and_says_why() {
    let f = Fixture::with_url("off", "", "").await;
    let sinks = Sinks::new(f.warehouse.clone());
    assert!(sinks.is_empty());
    let listed = sinks.list();
    assert!(
        listed[0].off.as_deref().unwrap().contains("`url` is empty"),
        "{listed:?}"
    );
    let err = sinks.run(&["warehouse".to_string()]).await.unwrap_err();
    assert!(err.to_string().contains("sink `warehouse` is off"), "{err}");
    let err = sinks.run(&["warehous".to_string()]).await.unwrap_err();
    assert!(
        err.to_string().contains("did you mean `warehouse`"),
        "{err}"
    );
}

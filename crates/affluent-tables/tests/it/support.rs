//! Test support: a project in a temp dir, landing entries written as a connector would, queries.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use affluent_config::Environment;
use affluent_landing::{EntryMeta, NewEntry};
use affluent_sources::Connectors;
use affluent_tables::Warehouse;
use affluent_tables::query::{OutputFormat, render};

pub(crate) fn fixture(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// A project in a temp dir.
pub(crate) struct TestProject {
    pub dir: tempfile::TempDir,
    pub warehouse: Warehouse,
}

impl TestProject {
    pub(crate) fn new(toml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("affluent.toml"), toml).unwrap();
        let warehouse = open(dir.path());
        Self { dir, warehouse }
    }

    /// Writes a file of the project (model SQL, ...).
    pub(crate) fn file(&self, name: &str, text: &str) {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Opens the project again (after a change of its files).
    pub(crate) fn reopen(&mut self) {
        self.warehouse = open(self.dir.path());
    }

    /// Lands a body for a source, as a connector does.
    pub(crate) fn land(&self, source: &str, run_id: &str, body: &[u8]) -> EntryMeta {
        self.warehouse
            .landing()
            .write(
                NewEntry {
                    source: source.into(),
                    run_id: run_id.into(),
                    kind: "http".into(),
                    url: format!("http://127.0.0.1/{source}"),
                    method: Some("GET".into()),
                    request_body: None,
                    vars: BTreeMap::new(),
                    page: 0,
                    status: 200,
                    headers: BTreeMap::new(),
                    fetched_at: jiff::Timestamp::now(),
                    interval: None,
                },
                body,
            )
            .unwrap()
    }

    /// A query's result as CSV.
    pub(crate) async fn csv(&self, sql: &str) -> String {
        let batches = self
            .warehouse
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        render(&batches, OutputFormat::Csv).unwrap()
    }

    /// A single-value query's result.
    pub(crate) async fn scalar(&self, sql: &str) -> String {
        let csv = self.csv(sql).await;
        let mut lines = csv.lines();
        lines.next();
        lines.next().unwrap_or("").to_string()
    }

    pub(crate) async fn count(&self, table: &str) -> u64 {
        self.scalar(&format!("SELECT count(*) FROM {table}"))
            .await
            .parse()
            .unwrap()
    }
}

fn open(dir: &std::path::Path) -> Warehouse {
    let project = affluent_config::load_with_env(dir, &Environment::from_map(Default::default()))
        .unwrap_or_else(|e| panic!("{e}"));
    Warehouse::new(Arc::new(Connectors::new(project).unwrap()))
}

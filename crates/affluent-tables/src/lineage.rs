//! Lineage: where a table's rows come from. Upstream, the models and tables it is computed from
//! (read from each model's SQL) down to the sources whose responses were loaded; and the landing
//! entries of its rows: every row of a source's table carries `_affluent_entry`, the response it
//! came from, and a model that selects that column keeps it.
//!
//! A condition (SQL, `agency = 'Lyon_1' AND day = DATE '2024-05-01'`) narrows the rows: on the
//! table asked for when its rows carry their entry, else on each source table upstream that has
//! the columns it names (a note says where it did not apply).

use std::collections::{BTreeSet, VecDeque};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};

pub use affluent_landing::EntryMeta;

use crate::mapping::ENTRY_COLUMN;
use crate::{TableError, Warehouse};

/// What a node of the lineage is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// A `[models.NAME]`: computed from what it reads.
    Model,
    /// A `[tables.NAME]`: loaded from a source's landing entries.
    Table,
    /// A table affluent writes itself (alerts, predictions, windows...).
    System,
}

/// One table or model upstream.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// What it is.
    pub kind: NodeKind,
    /// The source a table is loaded from.
    pub source: Option<String>,
    /// What a model reads.
    pub reads: Vec<String>,
}

/// The rows of a table that came from one landing entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EntryRows {
    /// The table whose rows these are.
    pub table: String,
    /// The source that landed the entry.
    pub source: Option<String>,
    /// The entry's id (`affluent landing show ID`).
    pub entry: String,
    /// Rows of the table from it (matching the condition, when one is given).
    pub rows: u64,
}

/// Where a table's rows come from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Lineage {
    /// The table or model asked for.
    pub table: String,
    /// It, then what it reads, breadth first.
    pub nodes: Vec<Node>,
    /// The landing entries of its rows (or of its source tables' rows), newest first, at most
    /// the limit per table.
    pub entries: Vec<EntryRows>,
    /// What could not be traced, and why.
    pub notes: Vec<String>,
}

impl Warehouse {
    /// The lineage of `table`, with at most `limit` entries per table; `condition` narrows the
    /// rows (see the module's documentation).
    pub async fn lineage(
        &self,
        table: &str,
        condition: Option<&str>,
        limit: usize,
    ) -> Result<Lineage, TableError> {
        let project = self.project();
        let nodes = self.upstream(table)?;
        let mut lineage = Lineage {
            table: table.to_string(),
            nodes,
            entries: Vec::new(),
            notes: Vec::new(),
        };
        // The table's own rows, when they carry their entry.
        let source_of = |name: &str| project.tables.get(name).map(|t| t.source.clone());
        let probe = format!(
            "SELECT {} FROM {} LIMIT 0",
            crate::load::quote(ENTRY_COLUMN),
            crate::load::quote(table)
        );
        let carries = match self.query(&probe).await {
            Ok(_) => Ok(()),
            Err(e) if is_missing_table(&e) => {
                lineage.notes.push(format!("`{table}` has no rows yet"));
                return Ok(lineage);
            }
            Err(e) => Err(e),
        };
        let own = match carries {
            Ok(()) => self.entry_rows(table, condition, limit).await,
            Err(e) => Err(e),
        };
        match own {
            Ok(rows) => {
                lineage.entries = rows
                    .into_iter()
                    .map(|(entry, rows)| EntryRows {
                        table: table.to_string(),
                        source: source_of(table),
                        entry,
                        rows,
                    })
                    .collect();
                return Ok(lineage);
            }
            Err(e) if lacks_entry(&e) => lineage.notes.push(format!(
                "the rows of `{table}` do not carry their landing entry (select `{ENTRY_COLUMN}` in the model to keep it): the entries are those of the tables it is computed from"
            )),
            Err(e) => return Err(e),
        }
        let upstream: Vec<String> = lineage
            .nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Table && n.name != table)
            .map(|n| n.name.clone())
            .collect();
        for name in upstream {
            match self.entry_rows(&name, condition, limit).await {
                Ok(rows) => lineage
                    .entries
                    .extend(rows.into_iter().map(|(entry, rows)| EntryRows {
                        table: name.clone(),
                        source: source_of(&name),
                        entry,
                        rows,
                    })),
                Err(e) if is_missing_table(&e) => {
                    lineage.notes.push(format!("`{name}` has no rows yet"));
                }
                Err(e) if condition.is_some() && matches!(e, TableError::Sql { .. }) => {
                    lineage.notes.push(format!(
                        "the condition does not apply to `{name}` ({}): its entries are not listed",
                        first_line(&affluent_core::error_chain(&e))
                    ));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(lineage)
    }

    /// `table` (or model), then what it is computed from, breadth first, down to the tables
    /// loaded from sources.
    pub fn upstream(&self, table: &str) -> Result<Vec<Node>, TableError> {
        let project = self.project();
        if !self.names().iter().any(|n| n == table) {
            return Err(self.unknown("table or model", table, &self.names()));
        }
        let deps = self.model_dependencies()?;
        let mut nodes = Vec::new();
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([table.to_string()]);
        while let Some(name) = queue.pop_front() {
            if !seen.insert(name.clone()) {
                continue;
            }
            let node = if let Some(reads) = deps.get(&name) {
                queue.extend(reads.iter().cloned());
                Node {
                    name,
                    kind: NodeKind::Model,
                    source: None,
                    reads: reads.iter().cloned().collect(),
                }
            } else if let Some(t) = project.tables.get(&name) {
                Node {
                    source: Some(t.source.clone()),
                    name,
                    kind: NodeKind::Table,
                    reads: Vec::new(),
                }
            } else {
                Node {
                    name,
                    kind: NodeKind::System,
                    source: None,
                    reads: Vec::new(),
                }
            };
            nodes.push(node);
        }
        Ok(nodes)
    }

    /// A landing entry of one of `sources`, by id: its metadata (the request as landed, secrets
    /// masked), or `None` when no such entry is there (any more).
    pub fn landing_entry(&self, sources: &[String], entry: &str) -> Option<EntryMeta> {
        self.landing_entries(sources, &[entry.to_string()])
            .remove(entry)
    }

    /// The landing entries of `sources` among `ids`, by id: one pass over each source's index
    /// (only the blocks holding them are read).
    pub fn landing_entries(
        &self,
        sources: &[String],
        ids: &[String],
    ) -> std::collections::HashMap<String, EntryMeta> {
        let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
        let landing = self.landing();
        let mut out = std::collections::HashMap::new();
        for source in sources {
            if out.len() == wanted.len() {
                break;
            }
            if let Ok(found) = landing.list_where(source, |id, _| wanted.contains(id)) {
                for e in found {
                    out.insert(e.meta.entry_id.clone(), e.meta);
                }
            }
        }
        out
    }

    /// The body of a landing entry, decompressed, at most `max` bytes (and whether it was cut).
    pub fn landing_body(
        &self,
        meta: &EntryMeta,
        max: usize,
    ) -> Result<(Vec<u8>, bool), TableError> {
        let mut body = self.landing().read_body(meta)?;
        let cut = body.len() > max;
        body.truncate(max);
        Ok((body, cut))
    }

    /// The sources whose landing entries the rows of `tables` (and what they are computed from)
    /// came from.
    pub fn sources_of(&self, tables: &[String]) -> Result<Vec<String>, TableError> {
        let mut out = BTreeSet::new();
        for t in tables {
            for n in self.upstream(t)? {
                if let Some(s) = n.source {
                    out.insert(s);
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Per landing entry, the rows of `table` (matching `condition`), newest entry first.
    async fn entry_rows(
        &self,
        table: &str,
        condition: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, u64)>, TableError> {
        let filter = condition.map(|c| format!(" WHERE {c}")).unwrap_or_default();
        let sql = format!(
            "SELECT CAST({entry} AS VARCHAR) AS entry, count(*) AS n FROM {t}{filter} GROUP BY 1 ORDER BY 1 DESC LIMIT {limit}",
            entry = crate::load::quote(ENTRY_COLUMN),
            t = crate::load::quote(table),
        );
        let batches = self.query(&sql).await?;
        let mut out = Vec::new();
        for batch in &batches {
            let entries = cast(batch.column(0), &DataType::Utf8)?;
            let entries = entries.as_string::<i32>();
            let counts = cast(batch.column(1), &DataType::Int64)?;
            let counts = counts.as_primitive::<Int64Type>();
            for i in 0..batch.num_rows() {
                if entries.is_null(i) {
                    continue;
                }
                out.push((
                    entries.value(i).to_string(),
                    u64::try_from(counts.value(i)).unwrap_or(0),
                ));
            }
        }
        Ok(out)
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// The query failed because the table has no `_affluent_entry` column.
fn lacks_entry(e: &TableError) -> bool {
    let text = affluent_core::error_chain(e);
    text.contains(ENTRY_COLUMN) && (text.contains("not found") || text.contains("No field"))
}

/// The query failed because the table was never written.
fn is_missing_table(e: &TableError) -> bool {
    let text = affluent_core::error_chain(e);
    text.contains("table '") && text.contains("not found")
}

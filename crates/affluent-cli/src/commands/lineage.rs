//! `affluent lineage`.

use std::process::ExitCode;

use affluent_tables::lineage::NodeKind;
use anyhow::{Result, bail};

use crate::args::{Format, short_time};
use crate::context::{Calls, Context};

/// Where a table's rows come from: the models and tables upstream, down to the sources, and the
/// landing entries (raw responses) of its rows, each with its request and when it was fetched.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The table or model.
    table: String,
    /// Only the rows matching this SQL condition, e.g. "agency = 'Lyon_1'" (on the table when
    /// its rows carry their entry, else on each source table upstream that has its columns).
    #[arg(long = "where")]
    condition: Option<String>,
    /// At most this many entries per table, the newest.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

/// One entry as printed.
#[derive(Debug, serde::Serialize)]
struct EntryLine {
    table: String,
    entry: String,
    rows: u64,
    source: Option<String>,
    fetched_at: Option<String>,
    status: Option<u16>,
    method: Option<String>,
    url: Option<String>,
    interval: Option<String>,
    bytes: Option<u64>,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    if args.limit == 0 || args.limit > 10_000 {
        bail!("--limit must be between 1 and 10000, got {}", args.limit);
    }
    let warehouse = ctx.warehouse(Calls::NoSource)?;
    let lineage = warehouse
        .lineage(&args.table, args.condition.as_deref(), args.limit)
        .await?;
    let sources: Vec<String> = lineage
        .entries
        .iter()
        .filter_map(|e| e.source.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let ids: Vec<String> = lineage.entries.iter().map(|e| e.entry.clone()).collect();
    let metas = warehouse.landing_entries(&sources, &ids);
    let entries: Vec<EntryLine> = lineage
        .entries
        .iter()
        .map(|e| {
            let meta = metas.get(&e.entry).cloned();
            EntryLine {
                table: e.table.clone(),
                entry: e.entry.clone(),
                rows: e.rows,
                source: e.source.clone(),
                fetched_at: meta.as_ref().map(|m| m.fetched_at.to_string()),
                status: meta.as_ref().map(|m| m.status),
                method: meta.as_ref().and_then(|m| m.method.clone()),
                url: meta.as_ref().map(|m| m.url.clone()),
                interval: meta
                    .as_ref()
                    .and_then(|m| m.interval.map(|i| i.to_string())),
                bytes: meta.as_ref().map(|m| m.bytes),
            }
        })
        .collect();
    if matches!(args.format, Format::Json) {
        println!(
            "{}",
            serde_json::json!({
                "table": lineage.table,
                "nodes": lineage.nodes,
                "entries": entries,
                "notes": lineage.notes,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    for node in &lineage.nodes {
        let what = match node.kind {
            NodeKind::Model => format!("model, reads {}", node.reads.join(", ")),
            NodeKind::Table => format!(
                "table, loaded from source `{}`",
                node.source.as_deref().unwrap_or("?")
            ),
            NodeKind::System => "written by affluent".to_string(),
        };
        println!("{} ({what})", node.name);
    }
    for note in &lineage.notes {
        println!("note: {note}");
    }
    if entries.is_empty() {
        println!("no landing entry: no row matches, or none was loaded yet");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "\n{:<20} {:<40} {:>8} {:<20} {:>6}  REQUEST",
        "TABLE", "ENTRY", "ROWS", "FETCHED (UTC)", "STATUS"
    );
    for e in &entries {
        println!(
            "{:<20} {:<40} {:>8} {:<20} {:>6}  {}{}",
            e.table,
            e.entry,
            e.rows,
            short_time(e.fetched_at.as_deref()),
            e.status.map_or("-".to_string(), |s| s.to_string()),
            e.method
                .as_deref()
                .map(|m| format!("{m} "))
                .unwrap_or_default(),
            e.url
                .as_deref()
                .unwrap_or("(entry gone from the landing zone)")
        );
    }
    println!("\nthe raw response: affluent landing show SOURCE ENTRY");
    Ok(ExitCode::SUCCESS)
}

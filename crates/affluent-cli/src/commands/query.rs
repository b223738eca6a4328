//! `affluent query`.

use std::io::Write;
use std::process::ExitCode;

use affluent_tables::OutputFormat;
use anyhow::Result;
use clap::ValueEnum;

use crate::context::{Calls, Context};

/// Run a read-only SQL query (DataFusion dialect) over the tables and models.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The query, e.g. "SELECT count(*) FROM events".
    sql: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    format: QueryFormat,
}

/// How query results print.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum QueryFormat {
    /// Aligned text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// A JSON array of objects.
    Json,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let batches = ctx.warehouse(Calls::NoSource)?.query(&args.sql).await?;
    let format = match args.format {
        QueryFormat::Table => OutputFormat::Table,
        QueryFormat::Csv => OutputFormat::Csv,
        QueryFormat::Json => OutputFormat::Json,
    };
    let text = affluent_tables::query::render(&batches, format)?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if format == OutputFormat::Table {
        writeln!(out)?;
    }
    Ok(ExitCode::SUCCESS)
}

//! `affluent export`.

use std::path::PathBuf;
use std::process::ExitCode;

use affluent_tables::ExportFormat;
use anyhow::Result;
use clap::ValueEnum;

use crate::context::{Calls, Context};

/// Write a table or model to a CSV or Parquet file.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The table or model.
    table: String,
    /// File format.
    #[arg(long, value_enum)]
    format: ExportKind,
    /// Output file.
    #[arg(long)]
    out: PathBuf,
}

/// File formats of an export.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ExportKind {
    /// CSV with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let format = match args.format {
        ExportKind::Csv => ExportFormat::Csv,
        ExportKind::Parquet => ExportFormat::Parquet,
    };
    let rows = ctx
        .warehouse(Calls::NoSource)?
        .export(&args.table, format, &args.out)
        .await?;
    println!(
        "{}: {rows} rows written to {}",
        args.table,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

//! `affluent quarantine ...`: records that did not fit, grouped by reason.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::args::source_or_all;
use crate::context::{Calls, Context};

/// Inspect the quarantine: records that did not fit, with their reason.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: QuarantineCommand,
}

#[derive(Debug, Subcommand)]
enum QuarantineCommand {
    /// Count quarantined records per source and reason, with examples.
    List {
        /// Only this source.
        source: Option<String>,
    },
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let project = ctx.project(Calls::NoSource)?;
    let QuarantineCommand::List { source } = args.command;
    let names = source_or_all(&project, source.as_deref())?;
    let quarantine = affluent_landing::Quarantine::open(&project.data_dir);
    let mut any = false;
    for name in names {
        let rejects = quarantine.list(&name)?;
        if rejects.is_empty() {
            continue;
        }
        any = true;
        let mut by_reason: BTreeMap<String, Vec<&affluent_landing::Reject>> = BTreeMap::new();
        for r in &rejects {
            let key = format!(
                "{}{}",
                r.field
                    .as_deref()
                    .map(|f| format!("{f}: "))
                    .unwrap_or_default(),
                generalize(&r.reason)
            );
            by_reason.entry(key).or_default().push(r);
        }
        println!("{name}: {} quarantined records", rejects.len());
        for (reason, rs) in by_reason {
            let ex = rs[0];
            println!(
                "  {:>7}  {reason}\n           e.g. entry {} {}: {}",
                rs.len(),
                ex.entry_id,
                ex.location,
                ex.raw
            );
        }
    }
    if !any {
        println!("quarantine is empty");
    }
    Ok(ExitCode::SUCCESS)
}

/// Groups reasons that differ only by the offending value: `expected an integer, found "x"`.
fn generalize(reason: &str) -> String {
    match reason.find(", found ") {
        Some(i) => format!("{}, found …", &reason[..i]),
        None => reason.to_string(),
    }
}

//! `affluent validate`.

use std::process::ExitCode;

use anyhow::Result;

use crate::context::{Calls, Context};

/// Check affluent.toml and .env: every error at once, with line and column.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the command.
pub async fn run(ctx: &Context, _args: Args) -> Result<ExitCode> {
    let project = ctx.project(Calls::AllSources)?;
    println!(
        "{}: ok ({} sources, time zone {}, data in {})",
        project.file.display(),
        project.sources.len(),
        project.timezone.iana_name().unwrap_or("UTC"),
        project.data_dir.display()
    );
    for source in project.replaying.keys() {
        if let Some(note) = project.replay_note(source) {
            println!("source `{source}` replays {note}: it calls no API");
        }
    }
    if project.storage.any_remote() {
        let own: Vec<String> = project
            .storage
            .own
            .iter()
            .map(|(name, location)| format!("{name} at {location}"))
            .collect();
        println!(
            "tables under {}{}",
            project.storage.root,
            if own.is_empty() {
                String::new()
            } else {
                format!("; {}", own.join(", "))
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! `affluent alerts ...`: the project's alert rules, evaluated over the tables as they are.

use std::process::ExitCode;

use affluent_alerts::{Alerts, Mode};
use anyhow::Result;
use clap::Subcommand;

use crate::args::print_evaluation;
use crate::context::{Calls, Context};

/// Alert rules: list them, try one over current data, or evaluate them.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AlertsCommand,
}

#[derive(Debug, Subcommand)]
enum AlertsCommand {
    /// Every alert with its severity, evaluations and active entities.
    List,
    /// Evaluate one alert over current data and show what would fire; records nothing.
    Test {
        /// The alert.
        name: String,
    },
    /// Evaluate alerts (all by default), record their firings in `alert_firings` and send them
    /// to the alerts' channels.
    Run {
        /// Alerts to evaluate (default: all).
        names: Vec<String>,
    },
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let warehouse = ctx.warehouse(Calls::NoSource)?;
    if warehouse.project().alerts.is_empty() {
        println!("no alert in the project: declare [alerts.NAME] with `sql`, `when` and `message`");
        return Ok(ExitCode::SUCCESS);
    }
    let alerts = Alerts::new(warehouse);
    let now = jiff::Timestamp::now();
    match args.command {
        AlertsCommand::List => {
            for a in alerts.list()? {
                let last = a.evaluated_at.map_or("never evaluated".to_string(), |t| {
                    format!("last evaluated {t}")
                });
                println!(
                    "{} [{}]: {} evaluations, {last}, active on {} of {} entities",
                    a.name,
                    a.severity.as_str(),
                    a.evaluations,
                    a.active,
                    a.entities
                );
            }
        }
        AlertsCommand::Test { name } => {
            let e = alerts.evaluate(&name, Mode::DryRun, now).await?;
            print_evaluation(&e, true);
        }
        AlertsCommand::Run { names } => {
            let pass = alerts.evaluate_many(&names, now).await;
            for e in &pass.evaluations {
                print_evaluation(e, false);
            }
            let sent = alerts.notify(&pass.evaluations).await;
            if sent.emailed > 0 || sent.posted > 0 {
                println!(
                    "sent: {} firings by email, {} by webhook",
                    sent.emailed, sent.posted
                );
            }
            for e in &sent.errors {
                println!("not sent: {e}");
            }
            for (name, e) in &pass.errors {
                eprintln!("error: alert `{name}`: {e}");
            }
            if !pass.errors.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

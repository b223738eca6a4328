//! `affluent ml ...`: the project's ML models, trained and applied over the tables as they are.

use std::process::ExitCode;

use affluent_ml::Ml;
use anyhow::Result;
use clap::Subcommand;

use crate::context::{Calls, Context};

/// ML models: list their versions, train them, or apply a saved version.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: MlCommand,
}

#[derive(Debug, Subcommand)]
enum MlCommand {
    /// Every model with its kind, last version and metrics.
    List,
    /// Train models (all by default): a new version each, its predictions written to the table
    /// of the model's name and its metrics to `ml_models`; then the alerts reading them.
    Train {
        /// Models to train (default: all).
        names: Vec<String>,
    },
    /// Apply a model's last saved version to the current rows of its query, without training.
    Predict {
        /// The model.
        name: String,
    },
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let warehouse = ctx.warehouse(Calls::NoSource)?;
    if warehouse.project().ml.is_empty() {
        println!("no ml model in the project: declare [ml.NAME] with `kind` and `sql`");
        return Ok(ExitCode::SUCCESS);
    }
    let ml = Ml::new(warehouse.clone());
    match args.command {
        MlCommand::List => {
            for m in ml.list()? {
                match (&m.trained_at, &m.metrics) {
                    (Some(at), Some(metrics)) => println!(
                        "{} ({}): version {}, trained {at} on {} rows; {}",
                        m.name,
                        m.kind.as_str(),
                        m.version,
                        metrics.train_rows,
                        serde_json::to_string(metrics)?
                    ),
                    _ => println!("{} ({}): never trained", m.name, m.kind.as_str()),
                }
            }
        }
        MlCommand::Train { names } => {
            let names = if names.is_empty() {
                warehouse.project().ml.keys().cloned().collect()
            } else {
                names
            };
            let mut failed = false;
            let mut trained = Vec::new();
            for name in &names {
                match ml.train(name, jiff::Timestamp::now()).await {
                    Ok(r) => {
                        println!("{r}");
                        trained.push(name.as_str());
                    }
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {e}");
                    }
                }
            }
            follow(&warehouse, &trained).await;
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        MlCommand::Predict { name } => {
            let r = ml.predict(&name).await?;
            println!("{r}");
            follow(&warehouse, &[name.as_str()]).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What follows new predictions of these models: the SQL models, alerts and sinks reading
/// them ([`affluent_pipeline::Downstream`]).
async fn follow(warehouse: &affluent_tables::Warehouse, models: &[&str]) {
    if models.is_empty() {
        return;
    }
    crate::args::after_change(warehouse, models).await;
}

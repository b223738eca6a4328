//! `affluent serve`, and the dashboard that `run` and `demo` start beside the scheduler.

use std::net::SocketAddr;
use std::process::ExitCode;

use affluent_pipeline::Runtime;
use affluent_web::{AppState, Server};
use anyhow::{Context as _, Result};

use crate::context::{Calls, Context};

/// Serve the dashboard: the project's pages, login, favourites, JSON API (/api/docs),
/// /healthz and /metrics.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address (default: `[dashboard] listen`, else 127.0.0.1:8080; port 0: any free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
}

/// Starts the dashboard on `addr` and prints where it is (and the setup link when no user
/// exists).
pub async fn start(runtime: &Runtime, addr: SocketAddr) -> Result<Server> {
    let state = AppState::new(runtime.warehouse.clone(), runtime.store.clone()).await?;
    let server = affluent_web::serve(state, addr).await?;
    eprintln!("dashboard: {}", server.url());
    if let Some(link) = &server.setup_url {
        eprintln!(
            "no user yet: create the first admin at {link}\n  (or run `affluent user add NAME --role admin`)"
        );
    }
    Ok(server)
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let runtime = ctx.runtime(Calls::NoSource).await?;
    let addr = args
        .listen
        .unwrap_or_else(|| affluent_web::listen_addr(runtime.project()));
    if runtime.project().pages.is_empty() {
        eprintln!(
            "note: the project declares no [pages.NAME]: only favourites and the API are served"
        );
    }
    let mut server = start(&runtime, addr).await?;
    // Stdout's first line is the URL, for scripts and tests.
    println!("{}", server.url());
    tokio::select! {
        r = server.wait() => r.context("the dashboard stopped")?,
        _ = crate::signals::shutdown() => eprintln!("stopping"),
    }
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

//! `affluent serve`, `affluent user ...`, and the dashboard started by `run` and `demo`.

use std::io::{BufRead, IsTerminal};
use std::net::SocketAddr;
use std::sync::Arc;

use affluent_config::Project;
use affluent_scheduler::store::Store;
use affluent_sources::Connectors;
use affluent_tables::Warehouse;
use affluent_web::{AppState, Role, Server, Users};
use anyhow::{Context, Result, bail};

use crate::scheduling::open_store;

/// Starts the dashboard on `addr` and prints where it is (and the setup link when no user
/// exists).
pub async fn start(warehouse: Warehouse, store: Store, addr: SocketAddr) -> Result<Server> {
    let state = AppState::new(warehouse, store).await?;
    let server = affluent_web::serve(state, addr).await?;
    eprintln!("dashboard: {}", server.url());
    if let Some(link) = &server.setup_url {
        eprintln!(
            "no user yet: create the first admin at {link}\n  (or run `affluent user add NAME --role admin`)"
        );
    }
    Ok(server)
}

/// `affluent serve`.
pub async fn serve(project: Project, listen: Option<SocketAddr>) -> Result<std::process::ExitCode> {
    let addr = listen.unwrap_or_else(|| affluent_web::listen_addr(&project));
    if project.pages.is_empty() {
        eprintln!(
            "note: the project declares no [pages.NAME]: only favourites and the API are served"
        );
    }
    let store = open_store(&project).await?;
    let warehouse = Warehouse::new(Arc::new(Connectors::new(project)?));
    let mut server = start(warehouse, store, addr).await?;
    // Stdout's first line is the URL, for scripts and tests.
    println!("{}", server.url());
    tokio::select! {
        r = server.wait() => r.context("the dashboard stopped")?,
        _ = crate::scheduling::shutdown_signal() => eprintln!("stopping"),
    }
    server.shutdown().await;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Reads a password: prompted twice on a terminal, else the first line of stdin.
pub fn read_password() -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("password: ")?;
        let again = rpassword::prompt_password("again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        if password.is_empty() {
            bail!("no password on stdin (pipe one in, or use --generate)");
        }
        Ok(password)
    }
}

/// The users of a project's state store.
pub async fn users(project: &Project) -> Result<Users> {
    let store = open_store(project).await?;
    Ok(Users::new(store.pool().clone()))
}

/// `affluent user add`.
pub async fn user_add(project: Project, name: &str, role: Role, generate: bool) -> Result<()> {
    let password = if generate {
        affluent_web::auth::generate_password()
    } else {
        read_password()?
    };
    users(&project).await?.add(name, &password, role).await?;
    eprintln!("user `{name}` added ({})", role.as_str());
    if generate {
        println!("{password}");
    }
    Ok(())
}

/// `affluent user passwd`.
pub async fn user_passwd(project: Project, name: &str, generate: bool) -> Result<()> {
    let password = if generate {
        affluent_web::auth::generate_password()
    } else {
        read_password()?
    };
    users(&project).await?.set_password(name, &password).await?;
    eprintln!("password of `{name}` changed");
    if generate {
        println!("{password}");
    }
    Ok(())
}

/// `affluent user list`.
pub async fn user_list(project: Project) -> Result<()> {
    for u in users(&project).await?.list().await? {
        println!("{}\t{}\t{}", u.name, u.role.as_str(), u.created);
    }
    Ok(())
}

/// `affluent user remove`.
pub async fn user_remove(project: Project, name: &str) -> Result<()> {
    users(&project).await?.remove(name).await?;
    eprintln!("user `{name}` removed");
    Ok(())
}

/// `affluent demo`: the footfall example against the in-process simulator, offline.
pub async fn demo(
    project_dir: &std::path::Path,
    listen: SocketAddr,
    weeks: u32,
    no_run: bool,
) -> Result<std::process::ExitCode> {
    use affluent_sources::IngestOptions;
    use affluent_tables::LoadScope;
    use jiff::{Timestamp, ToSpan};

    // The example, wherever the command runs from: the project given, else examples/footfall.
    let dir = if project_dir.join("affluent.toml").is_file() {
        project_dir.to_path_buf()
    } else {
        let example =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/footfall");
        if !example.join("affluent.toml").is_file() {
            bail!(
                "no affluent.toml in {} and no examples/footfall beside the sources: run from the repository, or pass --project examples/footfall",
                project_dir.display()
            );
        }
        example
    };
    let simulator = affluent_simulate::Server::footfall(0, affluent_simulate::Options::default())
        .await
        .context("cannot start the footfall simulator")?;
    let env = affluent_config::Environment::load(&dir)
        .map_err(anyhow::Error::msg)?
        .with("FOOTFALL_API_URL", &simulator.url());
    let project = match affluent_config::load_with_env(&dir, &env) {
        Ok(p) => p,
        Err(affluent_config::LoadError::Invalid(errors)) => {
            bail!("invalid project file\n\n{errors}")
        }
        Err(e) => return Err(e.into()),
    };
    if !project.sources.contains_key("footfall_api") {
        bail!(
            "{} has no source `footfall_api`: `affluent demo` runs examples/footfall",
            project.file.display()
        );
    }
    eprintln!(
        "footfall simulator (seed 004's API, deterministic) on {}",
        simulator.url()
    );

    let store = open_store(&project).await?;
    let users = Users::new(store.pool().clone());
    let password = affluent_web::auth::generate_password();
    match users.add("demo", &password, Role::Admin).await {
        Ok(()) => {}
        Err(affluent_web::WebError::Conflict(_)) => users.set_password("demo", &password).await?,
        Err(e) => return Err(e.into()),
    }
    let warehouse = Warehouse::new(Arc::new(Connectors::new(project.clone())?));
    let server = if no_run {
        None
    } else {
        Some(start(warehouse.clone(), store.clone(), listen).await?)
    };
    let banner = |server: &Option<Server>| {
        if let Some(s) = server {
            eprintln!(
                "\n  dashboard  {}\n  login      demo\n  password   {password}\n",
                s.url()
            );
        }
    };
    banner(&server);

    // Reference data first: the model corrects agency names against the agency list.
    for source in ["agencies", "holidays"] {
        if project.sources.contains_key(source) {
            let summary = warehouse
                .connectors()
                .ingest(
                    source,
                    &IngestOptions {
                        interval: None,
                        progress: false,
                    },
                )
                .await?;
            warehouse.load_source(source, &LoadScope::Pending).await?;
            eprintln!("{source}: {summary}");
        }
    }
    let now = Timestamp::now();
    let to = now
        .round(
            jiff::TimestampRound::new()
                .smallest(jiff::Unit::Hour)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap_or(now);
    let from = to
        .checked_sub((i64::from(weeks) * 7 * 24).hours())
        .context("--weeks is too large")?;
    eprintln!("backfilling {weeks} week(s) of hourly counts: {from} .. {to}");
    let code = crate::scheduling::backfill(
        project.clone(),
        "footfall_api",
        from,
        to,
        affluent_scheduler::backfill::Reprocess::None,
        false,
        false,
        3,
    )
    .await?;
    if no_run {
        return Ok(code);
    }
    banner(&server);
    eprintln!("running hourly; stop with Ctrl-C");
    let result = crate::scheduling::run(project, None, false, None).await;
    if let Some(server) = server {
        server.shutdown().await;
    }
    drop(simulator);
    result
}

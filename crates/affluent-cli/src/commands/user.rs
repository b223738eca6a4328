//! `affluent user ...`: the dashboard's users, in the state store.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use affluent_web::{Role, Users};
use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};

use crate::context::{Calls, Context};

/// Manage the dashboard's users (kept in the state store).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user; the password is prompted (or read from stdin's first line).
    Add {
        /// Login name.
        name: String,
        /// What they may do.
        #[arg(long, value_enum, default_value_t = RoleArg::Viewer)]
        role: RoleArg,
        /// Generate a password and print it on stdout.
        #[arg(long)]
        generate: bool,
    },
    /// Change a password (prompted, or stdin's first line).
    Passwd {
        /// Login name.
        name: String,
        /// Generate a password and print it on stdout.
        #[arg(long)]
        generate: bool,
    },
    /// List users.
    List,
    /// Remove a user and their favourites.
    Remove {
        /// Login name.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    /// Everything, including managing users.
    Admin,
    /// Pages, exports, favourites.
    Viewer,
}

/// Runs the command.
pub async fn run(ctx: &Context, args: Args) -> Result<ExitCode> {
    let project = ctx.project(Calls::NoSource)?;
    let users = Users::open(&crate::context::store(&project).await?).await?;
    match args.command {
        UserCommand::Add {
            name,
            role,
            generate,
        } => {
            let role = match role {
                RoleArg::Admin => Role::Admin,
                RoleArg::Viewer => Role::Viewer,
            };
            let password = new_password(generate)?;
            users.add(&name, &password, role).await?;
            eprintln!("user `{name}` added ({})", role.as_str());
            if generate {
                println!("{password}");
            }
        }
        UserCommand::Passwd { name, generate } => {
            let password = new_password(generate)?;
            users.set_password(&name, &password).await?;
            eprintln!("password of `{name}` changed");
            if generate {
                println!("{password}");
            }
        }
        UserCommand::List => {
            for u in users.list().await? {
                println!("{}\t{}\t{}", u.name, u.role.as_str(), u.created);
            }
        }
        UserCommand::Remove { name } => {
            users.remove(&name).await?;
            eprintln!("user `{name}` removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A generated password, or one read with [`read_password`].
fn new_password(generate: bool) -> Result<String> {
    if generate {
        Ok(affluent_web::auth::generate_password())
    } else {
        read_password()
    }
}

/// Reads a password: prompted twice on a terminal, else the first line of stdin.
fn read_password() -> Result<String> {
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

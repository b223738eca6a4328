//! [`Context`]: what every command starts from, and the one place that loads the project,
//! opens the warehouse and the state store.

use std::path::{Path, PathBuf};

use affluent_config::{LoadError, Project, SourceEnv};
use affluent_pipeline::Runtime;
use affluent_state::Store;
use affluent_tables::Warehouse;
use anyhow::{Result, bail};

/// Which of the project's sources a command calls: only those need their `${VAR}`s set.
#[derive(Debug, Clone, Copy)]
pub enum Calls<'a> {
    /// None: the command reads tables, landing or the state store.
    NoSource,
    /// These sources (and the ones they resolve parameters through).
    Sources(&'a [&'a str]),
    /// Every source.
    AllSources,
}

/// The project directory and how to open what a command needs.
#[derive(Debug)]
pub struct Context {
    dir: PathBuf,
    /// The secrets of the project last loaded, for the final error message.
    redactor: std::sync::OnceLock<std::sync::Arc<affluent_core::Redactor>>,
}

impl Context {
    /// The context of a project directory.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            redactor: std::sync::OnceLock::new(),
        }
    }

    /// A message with the loaded project's secrets scrubbed (a storage error can quote a
    /// request that holds a key).
    pub fn redact(&self, text: &str) -> String {
        match self.redactor.get() {
            Some(r) => r.redact(text),
            None => text.to_string(),
        }
    }

    /// The project directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the project for a command that calls `calls`: every error of the file at once,
    /// and every unset variable of the sources called, with line and column.
    pub fn project(&self, calls: Calls<'_>) -> Result<Project> {
        // Every source called: a strict load reports every problem of the file in one go.
        let source_env = match calls {
            Calls::AllSources => SourceEnv::Required,
            _ => SourceEnv::Deferred,
        };
        let project = match affluent_config::load_for(&self.dir, source_env) {
            Ok(p) => p,
            Err(LoadError::Invalid(errors)) => bail!("invalid project file\n\n{errors}"),
            Err(e) => return Err(e.into()),
        };
        let _ = self.redactor.set(project.redactor.clone());
        require(&project, calls)?;
        for w in &project.warnings {
            eprintln!("{w}\n");
        }
        Ok(project)
    }

    /// The project's warehouse (over its connectors).
    pub fn warehouse(&self, calls: Calls<'_>) -> Result<Warehouse> {
        Ok(affluent_pipeline::open_warehouse(self.project(calls)?)?)
    }

    /// The project's warehouse and state store.
    pub async fn runtime(&self, calls: Calls<'_>) -> Result<Runtime> {
        runtime(self.project(calls)?).await
    }
}

/// Fails with every problem of the sources a command calls.
pub fn require(project: &Project, calls: Calls<'_>) -> Result<()> {
    let checked = match calls {
        Calls::NoSource => Ok(()),
        Calls::Sources(names) => project.require_sources(names.iter().copied()),
        Calls::AllSources => project.require_all_sources(),
    };
    if let Err(errors) = checked {
        bail!("invalid project file\n\n{errors}");
    }
    Ok(())
}

/// The warehouse and state store of a loaded project.
pub async fn runtime(project: Project) -> Result<Runtime> {
    Ok(Runtime::open(project).await?)
}

/// The state store of a loaded project.
pub async fn store(project: &Project) -> Result<Store> {
    Ok(Store::open_project(project).await?)
}

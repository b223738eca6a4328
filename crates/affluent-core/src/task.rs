//! Task identities: what the scheduler runs and the state store records, `source:NAME` or
//! `model:NAME`. Code compares [`TaskId`]s; the text form exists only at the edges (state store
//! rows, JSON, the command line).

use std::fmt;
use std::str::FromStr;

/// What kind of thing a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskKind {
    /// A source: fetch, land, load its tables.
    Source,
    /// A SQL model: materialize its table.
    Model,
}

impl TaskKind {
    /// Every kind, in the order names are resolved on the command line.
    pub const ALL: [TaskKind; 2] = [TaskKind::Source, TaskKind::Model];

    /// `source` or `model`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Source => "source",
            TaskKind::Model => "model",
        }
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One schedulable unit: a kind and the source's or model's name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId {
    /// Source or model.
    pub kind: TaskKind,
    /// The name under `[sources.NAME]` or `[models.NAME]`.
    pub name: String,
}

impl TaskId {
    /// The task of a source.
    pub fn source(name: impl Into<String>) -> Self {
        Self {
            kind: TaskKind::Source,
            name: name.into(),
        }
    }

    /// The task of a model.
    pub fn model(name: impl Into<String>) -> Self {
        Self {
            kind: TaskKind::Model,
            name: name.into(),
        }
    }

    /// Whether this is a source's task.
    pub fn is_source(&self) -> bool {
        self.kind == TaskKind::Source
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// A text that is not `source:NAME` or `model:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid task {0:?}: expected source:NAME or model:NAME")]
pub struct InvalidTaskId(pub String);

impl FromStr for TaskId {
    type Err = InvalidTaskId;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidTaskId(text.to_string());
        let (kind, name) = text.split_once(':').ok_or_else(invalid)?;
        if name.is_empty() {
            return Err(invalid());
        }
        let kind = TaskKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
            .ok_or_else(invalid)?;
        Ok(Self {
            kind,
            name: name.to_string(),
        })
    }
}

impl serde::Serialize for TaskId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for TaskId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        for id in [TaskId::source("footfall_api"), TaskId::model("daily:x")] {
            let text = id.to_string();
            assert_eq!(text.parse::<TaskId>(), Ok(id));
        }
        assert_eq!(TaskId::source("a").to_string(), "source:a");
    }

    #[test]
    fn rejects_other_text() {
        for bad in ["", "source", "source:", "table:x", "x"] {
            assert!(bad.parse::<TaskId>().is_err(), "{bad}");
        }
    }
}

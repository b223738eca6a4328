//! `${VAR}` and `${VAR:-default}` interpolation from the process environment and a `.env` file
//! next to the project file. Interpolation runs on string values of the parsed document, so spans
//! stay those of the file and a missing variable is reported where it is used.

use std::collections::BTreeMap;
use std::path::Path;

/// The variables visible to the project: the process environment over the `.env` file.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    dotenv: BTreeMap<String, String>,
    process: BTreeMap<String, String>,
}

impl Environment {
    /// Reads the process environment and `DIR/.env` if present.
    pub fn load(project_dir: &Path) -> Result<Self, String> {
        let path = project_dir.join(".env");
        let dotenv = match std::fs::read_to_string(&path) {
            Ok(text) => parse_dotenv(&text).map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Self {
            dotenv,
            process: std::env::vars().collect(),
        })
    }

    /// An environment from explicit values only (tests, embedding).
    pub fn from_map(vars: BTreeMap<String, String>) -> Self {
        Self {
            dotenv: BTreeMap::new(),
            process: vars,
        }
    }

    /// The same environment with one variable set (over the process and `.env`).
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.process.insert(name.to_string(), value.to_string());
        self
    }

    /// Every variable whose name starts with `prefix`: process first, then `.env`.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a str)> {
        let mut seen = std::collections::BTreeMap::new();
        for (k, v) in self.dotenv.iter().chain(self.process.iter()) {
            if k.starts_with(prefix) {
                seen.insert(k.as_str(), v.as_str());
            }
        }
        seen.into_iter()
    }

    /// Looks a variable up: process first, then `.env`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.process
            .get(name)
            .or_else(|| self.dotenv.get(name))
            .map(String::as_str)
    }
}

/// Parses `KEY=VALUE` lines; `#` comments, `export ` prefixes and quoted values are accepted.
fn parse_dotenv(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: expected KEY=VALUE", i + 1))?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("line {}: invalid variable name {key:?}", i + 1));
        }
        let value = value.trim();
        let value = if let Some(v) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            v.replace("\\n", "\n").replace("\\\"", "\"")
        } else if let Some(v) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            v.to_string()
        } else {
            // Unquoted: a ` #` starts a comment.
            value.split(" #").next().unwrap_or("").trim().to_string()
        };
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

/// The result of interpolating one string.
pub(crate) struct Interpolated {
    pub value: String,
    /// Variables used, with the value each contributed.
    pub used: Vec<(String, String)>,
    /// Variables read that gave an empty value (unset with `${VAR:-}`, or set to nothing).
    pub missing: Vec<String>,
}

/// How the error of an unset variable starts (what a replaying source may do without).
pub(crate) const UNSET: &str = "environment variable `";

/// The variables of `text` that are unset and have no default.
pub(crate) fn unset_variables(text: &str, env: &Environment) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        // `$$` is a literal dollar.
        if let Some(r) = rest[i + 1..].strip_prefix('$') {
            rest = r;
            continue;
        }
        let Some(after) = rest[i + 1..].strip_prefix('{') else {
            rest = &rest[i + 1..];
            continue;
        };
        let Some(close) = after.find('}') else { break };
        let inner = &after[..close];
        if !inner.contains(":-") && env.get(inner).is_none() {
            out.push(inner.to_string());
        }
        rest = &after[close + 1..];
    }
    out
}

/// Replaces `${VAR}` and `${VAR:-default}`; `$$` is a literal `$`. Errors name the variable.
pub(crate) fn interpolate(text: &str, env: &Environment) -> Result<Interpolated, String> {
    let mut out = String::with_capacity(text.len());
    let mut used = Vec::new();
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let Some(inner_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let close = inner_start
            .find('}')
            .ok_or_else(|| format!("unclosed `${{` in {text:?}"))?;
        let inner = &inner_start[..close];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid variable name {name:?} in `${{{inner}}}`"));
        }
        let value = match (env.get(name), default) {
            (Some(v), _) => v.to_string(),
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                return Err(format!(
                    "{UNSET}{name}` is not set: export it or add `{name}=...` to the .env file next to affluent.toml (or write `${{{name}:-default}}`)"
                ));
            }
        };
        if env.get(name).is_some() {
            used.push((name.to_string(), value.clone()));
        }
        // Unset with an empty default (`${KEY:-}`), or set to nothing: no value to use.
        if value.is_empty() {
            missing.push(name.to_string());
        }
        out.push_str(&value);
        rest = &inner_start[close + 1..];
    }
    out.push_str(rest);
    Ok(Interpolated {
        value: out,
        used,
        missing,
    })
}

/// Whether a variable's name says it holds a secret.
pub(crate) fn is_secret_var(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "KEY",
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "PASS",
        "AUTH",
        "CREDENTIAL",
    ]
    .iter()
    .any(|w| upper.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment::from_map(BTreeMap::from([("A".to_string(), "1".to_string())]))
    }

    #[test]
    fn substitutes_defaults_and_escapes() {
        let r = interpolate("x${A}y${B:-two}$$z", &env()).unwrap();
        assert_eq!(r.value, "x1ytwo$z");
        assert_eq!(r.used, vec![("A".to_string(), "1".to_string())]);
    }

    #[test]
    fn unset_variables_are_those_without_a_default() {
        let env = Environment::from_map([("SET".to_string(), "x".to_string())].into());
        assert_eq!(
            unset_variables("$${ESCAPED} ${A} ${B:-} ${SET} ${C:-d} $D ${E}", &env),
            ["A", "E"]
        );
    }

    #[test]
    fn missing_variable_is_named() {
        let err = interpolate("${MISSING_TOKEN}", &env()).err().unwrap();
        assert!(err.contains("`MISSING_TOKEN` is not set"), "{err}");
    }

    #[test]
    fn dotenv_lines() {
        let vars = parse_dotenv("# c\nexport A=1\nB=\"x y\"\nC='z' \nD=v # comment\n").unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "x y");
        assert_eq!(vars["C"], "z");
        assert_eq!(vars["D"], "v");
        assert!(parse_dotenv("nope").is_err());
    }
}

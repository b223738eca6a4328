//! The one place that knows the project's secrets and scrubs them from any text that leaves the
//! process: logs, landing metadata, error messages.
//!
//! Secrets are registered when the project file is read (values interpolated from the environment
//! into auth, headers, params and bodies, or from variables whose name says they are secret) and at
//! run time (OAuth access tokens). Besides known values, query parameters whose *name* looks secret
//! (`apikey`, `token`, ...) are masked in URLs whatever their value.

use std::sync::RwLock;

use base64::Engine;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// What replaces a secret.
pub(crate) const MASK: &str = "***";

/// Secrets shorter than this are not scrubbed from free text (they would mangle it); the
/// validator warns about them.
pub(crate) const MIN_SECRET_LEN: usize = 3;

/// Query parameter and header names whose values are always masked.
const SECRET_NAMES: &[&str] = &[
    "apikey",
    "api_key",
    "api-key",
    "key",
    "token",
    "access_token",
    "auth",
    "authorization",
    "client_secret",
    "password",
    "secret",
    "signature",
    "x-auth-token",
    "x-api-key",
];

/// Holds known secret values and scrubs them from text.
#[derive(Debug, Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

impl Redactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret value, with the encodings it may appear under (percent-encoded in URLs,
    /// base64 in basic auth headers is registered by the caller as its own secret).
    pub fn add(&self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        let mut variants = vec![secret.to_string()];
        let encoded = utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string();
        if encoded != secret {
            variants.push(encoded);
        }
        let form = secret.replace(' ', "+");
        if form != secret {
            variants.push(form);
        }
        let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
        for v in variants {
            if !secrets.contains(&v) {
                secrets.push(v);
            }
        }
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Registers `user:password` as HTTP basic auth would send it.
    pub fn add_basic(&self, user: &str, password: &str) {
        self.add(password);
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.add(&token);
    }

    /// Whether a header or parameter name is one whose value is always masked.
    pub fn is_secret_name(name: &str) -> bool {
        let lower = name.to_ascii_lowercase();
        SECRET_NAMES.contains(&lower.as_str())
    }

    /// Replaces every known secret in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }

    /// Replaces known secrets in a body before it is stored; bodies that are not UTF-8 or hold
    /// no secret are returned as they are.
    pub fn redact_bytes<'a>(&self, body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let Ok(text) = std::str::from_utf8(body) else {
            return std::borrow::Cow::Borrowed(body);
        };
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        if !secrets.iter().any(|s| text.contains(s.as_str())) {
            return std::borrow::Cow::Borrowed(body);
        }
        drop(secrets);
        std::borrow::Cow::Owned(self.redact(text).into_bytes())
    }

    /// Redacts a URL: known secrets anywhere, the password of `scheme://user:password@host`
    /// (database URLs), and the value of any query parameter whose name looks secret.
    pub fn redact_url(&self, url: &str) -> String {
        let scrubbed = mask_userinfo_password(&self.redact(url));
        let Some((base, query)) = scrubbed.split_once('?') else {
            return scrubbed;
        };
        let (query, fragment) = match query.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (query, None),
        };
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if Self::is_secret_name(name) => format!("{name}={MASK}"),
                _ => pair.to_string(),
            })
            .collect();
        let mut out = format!("{base}?{}", pairs.join("&"));
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
        out
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:***@host/db`.
fn mask_userinfo_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let Some(colon) = authority[..at].find(':') else {
        return url.to_string();
    };
    format!(
        "{}{}{MASK}{}",
        &url[..authority_start],
        &authority[..=colon],
        &url[authority_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_values_and_their_encodings() {
        let r = Redactor::new();
        r.add("s3cr3t/key+1");
        let text = "url?k=s3cr3t%2Fkey%2B1 and raw s3cr3t/key+1";
        let out = r.redact(text);
        assert!(!out.contains("s3cr3t"), "{out}");
    }

    #[test]
    fn masks_secret_named_query_params() {
        let r = Redactor::new();
        let out = r.redact_url("https://x/y?apikey=abc&size=20&token=zz#f");
        assert_eq!(out, "https://x/y?apikey=***&size=20&token=***#f");
    }

    #[test]
    fn masks_basic_auth_header_form() {
        let r = Redactor::new();
        r.add_basic("user", "hunter22");
        assert_eq!(r.redact("Basic dXNlcjpodW50ZXIyMg=="), "Basic ***");
    }

    #[test]
    fn masks_the_password_of_a_database_url() {
        let r = Redactor::new();
        assert_eq!(
            r.redact_url("postgres://app:pa:ss@db.local:5432/x?sslmode=require"),
            "postgres://app:***@db.local:5432/x?sslmode=require"
        );
        assert_eq!(r.redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(r.redact_url("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    }
}

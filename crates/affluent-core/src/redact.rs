//! The one place that knows the project's secrets and scrubs them from any text that leaves the
//! process: logs, landing metadata, error messages.
//!
//! Secrets are registered when the project file is read (values interpolated from the environment
//! into auth, headers, params and bodies, or from variables whose name says they are secret) and at
//! run time (OAuth access tokens). Besides known values, query parameters whose *name* looks secret
//! (`apikey`, `token`, ...) are masked in URLs whatever their value.
//!
//! A secret is found under every encoding the client produces or a server echoes: as written,
//! percent-encoded in any mix (`ab-cd%2Fef`, `tok%20en`, lowercase hex), form-encoded (spaces as
//! `+`), JSON-escaped (`ab-cd\/ef`, `\u00e9`, `\"`), and in base64 (itself, or `user:password`
//! of basic auth). Escapes are matched by reading the text through one level of decoding and
//! masking the original characters behind each match.

use std::sync::RwLock;

use base64::Engine;

/// What replaces a secret.
pub(crate) const MASK: &str = "***";

/// Secrets shorter than this are not scrubbed from free text (they would mangle it); the
/// validator warns about them.
pub(crate) const MIN_SECRET_LEN: usize = 3;

/// Secrets this long or longer are also looked for in base64 (shorter ones would match
/// ordinary words).
const MIN_BASE64_LEN: usize = 6;

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

/// Holds known secret values and scrubs them from text. Its `Debug` shows how many, never
/// which.
#[derive(Default)]
pub struct Redactor {
    secrets: RwLock<Vec<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.secrets.read().map_or(0, |s| s.len());
        f.debug_struct("Redactor").field("secrets", &n).finish()
    }
}

impl Redactor {
    /// An empty redactor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a secret value. Percent and JSON escapes need no registration (see the module
    /// docs); its form encoding (spaces as `+`) and base64 forms are registered with it.
    pub fn add(&self, secret: &str) {
        if secret.len() < MIN_SECRET_LEN {
            return;
        }
        let mut variants = vec![secret.to_string()];
        let form = secret.replace(' ', "+");
        if form != secret {
            variants.push(form);
        }
        if secret.len() >= MIN_BASE64_LEN {
            use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
            for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                variants.push(engine.encode(secret));
            }
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

    /// Replaces every known secret in `text` with `***`, under any of its encodings.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        if !secrets.is_empty() && (out.contains('%') || out.contains('\\')) {
            out = mask_escaped(&out, &secrets);
        }
        out
    }

    /// Whether `text` holds a known secret under any of its encodings.
    pub fn contains_secret(&self, text: &str) -> bool {
        self.redact(text) != text
    }

    /// Replaces known secrets in a body before it is stored; bodies that are not UTF-8 or hold
    /// no secret are returned as they are.
    pub fn redact_bytes<'a>(&self, body: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let Ok(text) = std::str::from_utf8(body) else {
            return std::borrow::Cow::Borrowed(body);
        };
        let redacted = self.redact(text);
        if redacted == text {
            return std::borrow::Cow::Borrowed(body);
        }
        std::borrow::Cow::Owned(redacted.into_bytes())
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

/// `text` read through one level of escapes: each byte of the decoded text, with the range of
/// `text` it came from. Percent escapes (`%2F`, `%2f`) and JSON escapes (`\/`, `\"`, `\\`,
/// `\n`, `\u00e9`, surrogate pairs) are decoded; everything else is itself.
fn decoded_view(text: &str, percent: bool, json: bool) -> (Vec<u8>, Vec<(usize, usize)>) {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut spans = Vec::with_capacity(bytes.len());
    let hex = |b: u8| (b as char).to_digit(16);
    let hex4 = |at: usize| -> Option<u32> {
        let digits = bytes.get(at..at + 4)?;
        digits
            .iter()
            .try_fold(0u32, |acc, &d| Some(acc * 16 + hex(d)?))
    };
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if percent
            && b == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|&c| hex(c)),
                bytes.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            decoded.push((h * 16 + l) as u8);
            spans.push((i, i + 3));
            i += 3;
            continue;
        }
        if json
            && b == b'\\'
            && let Some(&next) = bytes.get(i + 1)
        {
            let simple = match next {
                b'/' => Some(b'/'),
                b'\\' => Some(b'\\'),
                b'"' => Some(b'"'),
                b'\'' => Some(b'\''),
                b'n' => Some(b'\n'),
                b't' => Some(b'\t'),
                b'r' => Some(b'\r'),
                b'b' => Some(0x08),
                b'f' => Some(0x0c),
                _ => None,
            };
            if let Some(c) = simple {
                decoded.push(c);
                spans.push((i, i + 2));
                i += 2;
                continue;
            }
            if next == b'u'
                && let Some(unit) = hex4(i + 2)
            {
                let (code, len) = if (0xD800..0xDC00).contains(&unit)
                    && bytes.get(i + 6) == Some(&b'\\')
                    && bytes.get(i + 7) == Some(&b'u')
                    && let Some(low) = hex4(i + 8)
                    && (0xDC00..0xE000).contains(&low)
                {
                    (0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00), 12)
                } else {
                    (unit, 6)
                };
                if let Some(c) = char::from_u32(code) {
                    let mut buf = [0u8; 4];
                    for &byte in c.encode_utf8(&mut buf).as_bytes() {
                        decoded.push(byte);
                        spans.push((i, i + len));
                    }
                    i += len;
                    continue;
                }
            }
        }
        decoded.push(b);
        spans.push((i, i + 1));
        i += 1;
    }
    (decoded, spans)
}

/// Masks the characters of `text` behind every secret found in its decoded views: percent and
/// JSON escapes decoded, and each alone (a secret may hold a `%` or `\\` of its own).
fn mask_escaped(text: &str, secrets: &[String]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (percent, json) in [(true, true), (true, false), (false, true)] {
        let (decoded, spans) = decoded_view(text, percent, json);
        for secret in secrets {
            let needle = secret.as_bytes();
            if needle.is_empty() {
                continue;
            }
            for at in memchr::memmem::find_iter(&decoded, needle) {
                ranges.push((spans[at].0, spans[at + needle.len() - 1].1));
            }
        }
    }
    if ranges.is_empty() {
        return text.to_string();
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in ranges {
        if end <= at {
            continue;
        }
        if start > at {
            out.push_str(&text[at..start]);
        } else if start < at {
            // Overlaps the previous mask: extend it.
            at = end;
            continue;
        }
        out.push_str(MASK);
        at = end;
    }
    out.push_str(&text[at..]);
    out
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use proptest::prelude::*;

    /// `%2F` → `%2f`, the rest as it is.
    fn lowercase_escapes(text: &str) -> String {
        let mut out = String::new();
        let mut left = 0;
        for c in text.chars() {
            if c == '%' {
                left = 2;
                out.push(c);
            } else if left > 0 {
                left -= 1;
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Every form in which a client sends `secret` or a server echoes it.
    fn encodings(secret: &str) -> Vec<(&'static str, String)> {
        use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
        // The url crate's path segment set (what `path_segments_mut().push` encodes).
        const SEGMENT: &AsciiSet = &CONTROLS
            .add(b' ')
            .add(b'"')
            .add(b'#')
            .add(b'<')
            .add(b'>')
            .add(b'?')
            .add(b'`')
            .add(b'{')
            .add(b'}')
            .add(b'/')
            .add(b'%');
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let mut query = url::Url::parse("https://api.test/x").unwrap();
        query.query_pairs_mut().append_pair("key", secret);
        let mut path = url::Url::parse("https://api.test/").unwrap();
        path.path_segments_mut().unwrap().push(secret);
        let json = serde_json::to_string(secret).unwrap();
        let json_slashes = json.replace('/', "\\/");
        let json_ascii: String = secret
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    let mut units = [0u16; 2];
                    c.encode_utf16(&mut units)
                        .iter()
                        .map(|u| format!("\\u{u:04x}"))
                        .collect()
                }
            })
            .collect();
        vec![
            ("raw", secret.to_string()),
            ("form", form),
            ("query", query.to_string()),
            ("path", path.to_string()),
            ("segment", utf8_percent_encode(secret, SEGMENT).to_string()),
            (
                "strict",
                utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string(),
            ),
            (
                "strict lowercase",
                lowercase_escapes(&utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string()),
            ),
            ("json", json),
            ("json slashes", json_slashes),
            ("json ascii", json_ascii),
            ("base64", STANDARD.encode(secret)),
            ("basic", STANDARD.encode(format!("user:{secret}"))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn no_encoding_of_a_secret_survives(
            secret in "[a-zA-Z0-9/+=&%?# ._~\\-\"'é€😀]{6,24}",
            before in "[a-z ]{0,8}",
            after in "[a-z ]{0,8}",
        ) {
            let r = Redactor::new();
            r.add(&secret);
            r.add_basic("user", &secret);
            for (name, encoded) in encodings(&secret) {
                let text = format!("{before}<{encoded}>{after}");
                let out = r.redact(&text);
                for (_, form) in encodings(&secret) {
                    prop_assert!(
                        !out.contains(&form) || form.len() < 6 && !text.contains(&form),
                        "{name}: {text:?} -> {out:?} still holds {form:?}"
                    );
                }
                prop_assert!(out.starts_with(&format!("{before}<")), "{name}: {out:?}");
                prop_assert!(out.ends_with(&format!(">{after}")), "{name}: {out:?}");
            }
        }
    }

    #[test]
    fn the_forms_the_issue_names_are_scrubbed() {
        let r = Redactor::new();
        r.add("ab-cd/ef_gh.ij");
        r.add("tok en-1");
        for text in [
            "https://api.test/x?apikey=ab-cd%2Fef_gh.ij&page=2",
            "https://api.test/v1/tok%20en-1/events",
            r#"{"error": "invalid key ab-cd\/ef_gh.ij"}"#,
            "HTTP 401: key ab%2dcd%2fef%5fgh%2eij refused",
        ] {
            let out = r.redact(text);
            assert!(
                !out.contains("ef_gh") && !out.contains("en-1"),
                "{text} -> {out}"
            );
            assert!(out.contains(MASK), "{out}");
        }
        assert_eq!(
            r.redact("page=2&key=ab-cd%2Fef_gh.ij&size=10"),
            "page=2&key=***&size=10"
        );
        // Escapes that hide no secret are left as they are.
        let plain = r#"{"next": "https:\/\/api.test\/p?x=%2F", "name": "\u00e9t\u00e9"}"#;
        assert_eq!(r.redact(plain), plain);
    }

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

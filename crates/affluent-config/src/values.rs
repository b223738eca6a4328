//! Typed values of the project file: parsed once, while the file is read, so that a bad value
//! is reported with its line and column and no code below the config layer parses it again.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written as text (`"90s"`, `"15m"`, `"1h30m"`, `"30d"`), parsed on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(Duration);

impl ConfigDuration {
    /// A duration given in code (defaults, tests).
    pub const fn new(d: Duration) -> Self {
        Self(d)
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<ConfigDuration> for Duration {
    fn from(d: ConfigDuration) -> Self {
        d.0
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&affluent_core::format_period(self.0))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        affluent_core::parse_duration(&text)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// An IANA time zone name (`"Europe/Paris"`), resolved on load.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigTimeZone(jiff::tz::TimeZone);

impl ConfigTimeZone {
    /// The time zone.
    pub fn get(&self) -> &jiff::tz::TimeZone {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ConfigTimeZone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        jiff::tz::TimeZone::get(&name).map(Self).map_err(|_| {
            serde::de::Error::custom(format!(
                "unknown time zone \"{name}\": use an IANA name such as \"Europe/Paris\""
            ))
        })
    }
}

/// A cron expression (5 fields, or 6 with seconds first), parsed on load.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    cron: croner::Cron,
}

impl CronExpr {
    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed pattern.
    pub fn cron(&self) -> &croner::Cron {
        &self.cron
    }
}

impl std::str::FromStr for CronExpr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        <croner::Cron as std::str::FromStr>::from_str(text)
            .map(|cron| Self {
                text: text.to_string(),
                cron,
            })
            .map_err(|e| format!("invalid cron expression {text:?}: {e} (five fields: minute hour day-of-month month day-of-week, e.g. \"0 * * * *\")"))
    }
}

impl<'de> Deserialize<'de> for CronExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A `start_date`: a date (local midnight), a local date-time, an RFC 3339 instant, or a
/// duration before now (`"-8w"`). Parsed on load; resolved against a time zone and a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartDate {
    /// A duration before now: moves with every start of the process.
    Ago(Duration),
    /// An instant.
    Instant(jiff::Timestamp),
    /// A civil date-time, in the source's time zone.
    DateTime(jiff::civil::DateTime),
    /// A civil date: its local midnight.
    Date(jiff::civil::Date),
}

impl StartDate {
    /// Whether the start moves with the clock (`"-8w"`).
    pub fn is_relative(self) -> bool {
        matches!(self, StartDate::Ago(_))
    }

    /// The instant this start stands for, in `tz`, at `now`.
    pub fn resolve(
        self,
        tz: &jiff::tz::TimeZone,
        now: jiff::Timestamp,
    ) -> Result<jiff::Timestamp, String> {
        match self {
            StartDate::Ago(d) => {
                let d = jiff::SignedDuration::try_from(d).map_err(|e| e.to_string())?;
                now.checked_sub(d).map_err(|e| e.to_string())
            }
            StartDate::Instant(t) => Ok(t),
            StartDate::DateTime(dt) => dt
                .to_zoned(tz.clone())
                .map(|z| z.timestamp())
                .map_err(|e| e.to_string()),
            StartDate::Date(d) => d
                .to_zoned(tz.clone())
                .and_then(|z| z.start_of_day())
                .map(|z| z.timestamp())
                .map_err(|e| e.to_string()),
        }
    }
}

impl std::str::FromStr for StartDate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(ago) = text.strip_prefix('-') {
            return affluent_core::parse_duration(ago).map(StartDate::Ago);
        }
        if let Ok(t) = text.parse::<jiff::Timestamp>() {
            return Ok(StartDate::Instant(t));
        }
        if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
            return Ok(StartDate::DateTime(dt));
        }
        if let Ok(d) = text.parse::<jiff::civil::Date>() {
            return Ok(StartDate::Date(d));
        }
        Err(format!(
            "invalid time {text:?}: use a date (\"2024-01-01\"), a date-time (\"2024-01-01T08:00\"), an RFC 3339 instant, or a duration before now (\"-8w\")"
        ))
    }
}

impl<'de> Deserialize<'de> for StartDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// An address and port to listen on (`"127.0.0.1:8080"`), parsed on load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub std::net::SocketAddr);

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(Self).map_err(|_| {
            serde::de::Error::custom(format!(
                "`listen` must be an address and port such as \"127.0.0.1:8080\" (got \"{text}\")"
            ))
        })
    }
}

/// A JSON path (`_embedded.events`, `[1]`, `cursors.next`), parsed on load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPathExpr {
    text: String,
    path: affluent_core::JsonPath,
}

impl JsonPathExpr {
    /// The path as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The parsed path.
    pub fn path(&self) -> &affluent_core::JsonPath {
        &self.path
    }
}

impl std::str::FromStr for JsonPathExpr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        affluent_core::JsonPath::parse(text)
            .map(|path| Self {
                text: text.to_string(),
                path,
            })
            .map_err(|e| e.to_string())
    }
}

impl<'de> Deserialize<'de> for JsonPathExpr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct T {
        d: ConfigDuration,
    }

    #[test]
    fn parses_on_load_and_says_what_is_wrong() {
        let ok: T = toml::from_str("d = \"1h30m\"").expect("valid");
        assert_eq!(ok.d.get(), Duration::from_secs(5400));
        let bad = toml::from_str::<T>("d = \"5 parsecs\"").expect_err("invalid");
        assert!(bad.message().contains("invalid duration"), "{bad}");
    }
}

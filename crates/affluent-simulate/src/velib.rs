//! Vélib' Métropole's stations in real time, in the two shapes users poll: Paris Open Data's
//! Opendatasoft dataset `velib-disponibilite-en-temps-reel` (`/records` paged by `limit` and
//! `offset`, `/exports/json`) and Vélib's GBFS feeds (`gbfs.json`, `station_information.json`,
//! `station_status.json`, `system_information.json`).
//!
//! The stations are the 1,471 of the real export (../shared/fixtures, May 2024, Paris Open
//! Data; `velib_stations.tsv`, written by scripts/fixtures/velib_stations.py) with their names,
//! capacities, coordinates and communes. Everything else is a pure function of (seed, station,
//! time), so what a poll sees does not depend on who polled before:
//!
//! - **reports**: a station reports every 30 to 90 seconds (its own period and phase); a
//!   report is visible after a delivery delay of up to 30 seconds, and a poll sees the latest
//!   visible report (`duedate` / `last_reported` is the report's time);
//! - **repeats**: a poll that comes before the station's next report sees the same report
//!   again; a station that stops reporting (1 % of station-days, 1 to 6 hours) repeats its last
//!   report for the whole episode;
//! - **late reports**: in a backlog episode (3 % of station-days, 20 to 90 minutes) a station's
//!   reports arrive 6 to 12 minutes after their time, so polls see reports that old;
//! - **bikes**: each station empties or fills with the day (residential stations empty in the
//!   morning and fill in the evening, the others the reverse, less so at weekends), with noise
//!   per 10 minutes, so stations run full and empty; e-bikes are a share of each station's
//!   bikes; a few docks are out of order; 0.5 % of station-days a station is closed
//!   (`is_renting` and `is_returning` `NON`).
//!
//! [`Velib::truth`] replays polls at given times and says, per station, what each poll saw and
//! whether it was new, a repeat, or a late report: the ground truth a stream is checked against.

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::{Value, json};

use crate::belib::{
    OdsError, export_limit, ods_datetime, ods_error, page, refuse_unsupported, timezone,
};
use crate::draw::{hash, name_key, normal, uniform};

/// The stations of the real export, one tab-separated row each.
pub const STATIONS_TSV: &str = include_str!("velib_stations.tsv");

/// The real-time dataset's id on Opendatasoft.
pub const DATASET: &str = "velib-disponibilite-en-temps-reel";
/// Where the GBFS feeds are (`{GBFS_PATH}/station_status.json`).
pub const GBFS_PATH: &str = "/opendata/Velib_Metropole";

/// The longest delivery delay of a report outside a backlog episode, seconds.
pub const PROMPT_DELAY_MAX: i64 = 30;
/// The shortest delay of a report in a backlog episode, seconds.
pub const LATE_DELAY_MIN: i64 = 6 * 60;
/// The longest delay of a report in a backlog episode, seconds.
pub const LATE_DELAY_MAX: i64 = 12 * 60;
/// The longest gap between two reports of a station that is reporting, seconds.
pub const REPORT_PERIOD_MAX: i64 = 90;

/// One station (static data).
#[derive(Debug, Clone, PartialEq)]
pub struct Station {
    /// `stationcode` (GBFS `stationCode`).
    pub code: String,
    /// GBFS `station_id` (the real one where Vélib's feed has the station).
    pub station_id: u64,
    /// `name`.
    pub name: String,
    /// `capacity` (docks).
    pub capacity: u32,
    /// Longitude.
    pub lon: f64,
    /// Latitude.
    pub lat: f64,
    /// `nom_arrondissement_communes` (`Paris`, `Boulogne-Billancourt`, ...).
    pub commune: String,
}

/// The stations of [`STATIONS_TSV`].
pub fn stations() -> Vec<Station> {
    let mut lines = STATIONS_TSV.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    lines
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != header.len() {
                return None;
            }
            let get = |name: &str| col(name).map(|i| f[i]).unwrap_or_default();
            let code = get("stationcode").to_string();
            let station_id = get("station_id")
                .parse()
                .unwrap_or_else(|_| 1_000_000_000 + name_key(&code) % 1_000_000_000);
            Some(Station {
                station_id,
                name: get("name").to_string(),
                capacity: get("capacity").parse().ok()?,
                lon: get("lon").parse().ok()?,
                lat: get("lat").parse().ok()?,
                commune: get("nom_arrondissement_communes").to_string(),
                code,
            })
        })
        .collect()
}

/// A station's state as one report gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Report {
    /// When the station reported (Unix seconds).
    pub at: i64,
    /// Mechanical bikes available.
    pub mechanical: u32,
    /// E-bikes available.
    pub ebike: u32,
    /// Free docks.
    pub docks: u32,
    /// Renting and returning.
    pub open: bool,
}

impl Report {
    /// Bikes available.
    pub fn bikes(&self) -> u32 {
        self.mechanical + self.ebike
    }
}

/// What one poll saw of one station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Seen {
    /// When the poll was (Unix seconds).
    pub polled_at: i64,
    /// The station's code.
    pub stationcode: String,
    /// The report's time (Unix seconds).
    pub reported_at: i64,
    /// The same report as a poll before saw.
    pub repeat: bool,
    /// A report delivered in a backlog episode (6 to 12 minutes after its time).
    pub late: bool,
    /// Bikes, e-bikes included.
    pub bikes: u32,
    /// E-bikes.
    pub ebike: u32,
    /// Free docks.
    pub docks: u32,
}

/// The Vélib' model: stations and their reports through time.
#[derive(Debug, Clone)]
pub struct Velib {
    seed: u64,
    stations: Vec<Station>,
    keys: Vec<u64>,
    paris: TimeZone,
}

const DAY: i64 = 86_400;

impl Velib {
    /// The 1,471 real stations, reports drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        let stations = stations();
        let keys = stations.iter().map(|s| name_key(&s.code)).collect();
        Self {
            seed,
            stations,
            keys,
            paris: TimeZone::get("Europe/Paris").unwrap_or(TimeZone::UTC),
        }
    }

    /// The stations.
    pub fn stations(&self) -> &[Station] {
        &self.stations
    }

    /// One draw for station `i` and up to two parts.
    fn draw(&self, i: usize, parts: &[u64]) -> u64 {
        let mut all = [self.seed, self.keys[i], 0, 0];
        let n = parts.len().min(2);
        all[2..2 + n].copy_from_slice(&parts[..n]);
        hash(&all[..2 + n])
    }

    /// Station `i`'s report period and phase, seconds.
    fn period(&self, i: usize) -> (i64, i64) {
        let h = self.draw(i, &[0x9e71]);
        let period = 30 + (h % 61) as i64;
        (period, (h >> 20) as i64 % period)
    }

    /// An episode of a station-day `[start, end)`, if that day draws one.
    fn episode(
        &self,
        i: usize,
        day: i64,
        tag: u64,
        share: f64,
        min: i64,
        max: i64,
    ) -> Option<(i64, i64)> {
        let h = self.draw(i, &[tag, day as u64]);
        if uniform(h) >= share {
            return None;
        }
        let start = day * DAY + (hash(&[h, 1]) % DAY as u64) as i64;
        let length = min + (hash(&[h, 2]) % (max - min + 1) as u64) as i64;
        Some((start, start + length))
    }

    /// The episode of kind `tag` covering `t`, looking back one day (episodes last < 1 day).
    fn episode_at(
        &self,
        i: usize,
        t: i64,
        tag: u64,
        share: f64,
        min: i64,
        max: i64,
    ) -> Option<(i64, i64)> {
        let day = t.div_euclid(DAY);
        [day, day - 1]
            .into_iter()
            .filter_map(|d| self.episode(i, d, tag, share, min, max))
            .find(|(s, e)| (*s..*e).contains(&t))
    }

    fn silent(&self, i: usize, t: i64) -> Option<(i64, i64)> {
        self.episode_at(i, t, 0x511e, 0.01, 3600, 6 * 3600)
    }

    fn backlog(&self, i: usize, t: i64) -> Option<(i64, i64)> {
        self.episode_at(i, t, 0xbac1, 0.03, 20 * 60, 90 * 60)
    }

    /// When report `at` of station `i` becomes visible.
    fn visible_at(&self, i: usize, at: i64) -> i64 {
        if self.backlog(i, at).is_some() {
            let h = self.draw(i, &[0x1a7e, at as u64]);
            at + LATE_DELAY_MIN + (h % (LATE_DELAY_MAX - LATE_DELAY_MIN + 1) as u64) as i64
        } else {
            at + (self.draw(i, &[0xde1a, at as u64]) % (PROMPT_DELAY_MAX as u64 + 1)) as i64
        }
    }

    /// The time of the latest report station `i` made at or before `t` (it makes none while
    /// silent).
    fn report_before(&self, i: usize, t: i64) -> i64 {
        let (period, phase) = self.period(i);
        let t = match self.silent(i, t) {
            Some((start, _)) => start - 1,
            None => t,
        };
        (t - phase).div_euclid(period) * period + phase
    }

    /// The report a poll at `now` (Unix seconds) sees of station `i`: the latest one visible.
    pub fn seen_at(&self, i: usize, now: i64) -> Report {
        let (period, _) = self.period(i);
        let mut at = self.report_before(i, now);
        // Any report older than the longest delay is visible: the search is short.
        while self.visible_at(i, at) > now && at > now - LATE_DELAY_MAX - 2 * period {
            at = self.report_before(i, at - 1);
        }
        self.report(i, at)
    }

    /// Station `i`'s state when it reported at `at`.
    pub fn report(&self, i: usize, at: i64) -> Report {
        let s = &self.stations[i];
        let open = self
            .episode(i, at.div_euclid(DAY), 0xc105, 0.005, DAY, DAY)
            .is_none();
        let h = self.draw(i, &[0x0d0c]);
        let broken = (h % 4).min(u64::from(s.capacity / 10)) as u32;
        let usable = s.capacity.saturating_sub(broken);
        if usable == 0 {
            return Report {
                at,
                mechanical: 0,
                ebike: 0,
                docks: 0,
                open,
            };
        }
        let fill = self.fill(i, at);
        let bikes = ((fill * f64::from(usable)).round() as u32).min(usable);
        let share = 0.25 + 0.3 * uniform(self.draw(i, &[0xeb1e]));
        let ebike = ((f64::from(bikes) * share).round() as u32).min(bikes);
        Report {
            at,
            mechanical: bikes - ebike,
            ebike,
            docks: usable - bikes,
            open,
        }
    }

    /// The share of usable docks holding a bike at `at`.
    fn fill(&self, i: usize, at: i64) -> f64 {
        let zoned = Timestamp::from_second(at)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(self.paris.clone());
        let hour = f64::from(zoned.hour()) + f64::from(zoned.minute()) / 60.0;
        let weekend = zoned.weekday().to_monday_one_offset() >= 6;
        let residential = uniform(self.draw(i, &[0x4e51])) < 0.55;
        let base = 0.2 + 0.6 * uniform(self.draw(i, &[0xba5e]));
        let swing =
            (0.25 + 0.35 * uniform(self.draw(i, &[0x5a1d]))) * if weekend { 0.4 } else { 1.0 };
        // Residential stations are fullest at night and emptiest mid-day.
        let day = (std::f64::consts::TAU * (hour - 3.0) / 24.0).cos();
        let cycle = if residential { day } else { -day };
        // Noise per 10 minutes, smoothed between slots.
        let slot = at.div_euclid(600);
        let frac = (at.rem_euclid(600)) as f64 / 600.0;
        let noise = |k: i64| 0.08 * normal(self.draw(i, &[0x0015, k as u64]));
        let noise = noise(slot) * (1.0 - frac) + noise(slot + 1) * frac;
        (base + swing * cycle + noise).clamp(0.0, 1.0)
    }

    /// The Opendatasoft record of station `i` as a poll at `now` sees it.
    pub fn ods_record(&self, i: usize, now: i64, tz: &TimeZone) -> Value {
        let s = &self.stations[i];
        let r = self.seen_at(i, now);
        let yes = |b: bool| if b { "OUI" } else { "NON" };
        json!({
            "stationcode": s.code,
            "name": s.name,
            "is_installed": "OUI",
            "capacity": s.capacity,
            "numdocksavailable": r.docks,
            "numbikesavailable": r.bikes(),
            "mechanical": r.mechanical,
            "ebike": r.ebike,
            "is_renting": yes(r.open),
            "is_returning": yes(r.open),
            "duedate": ods_datetime(Timestamp::from_second(r.at).unwrap_or(Timestamp::UNIX_EPOCH), tz),
            "coordonnees_geo": { "lon": s.lon, "lat": s.lat },
            "nom_arrondissement_communes": s.commune,
            "code_insee_commune": Value::Null,
        })
    }

    /// `GET /api/explore/v2.1/catalog/datasets/velib-disponibilite-en-temps-reel/records`.
    pub fn records(
        &self,
        dataset: &str,
        params: &HashMap<String, String>,
        now: Timestamp,
    ) -> Result<Value, OdsError> {
        let tz = self.request(dataset, params)?;
        let (from, to) = page(params, self.stations.len())?;
        let now = now.as_second();
        let results: Vec<Value> = (from..to).map(|i| self.ods_record(i, now, &tz)).collect();
        Ok(json!({ "total_count": self.stations.len(), "results": results }))
    }

    /// `GET /api/explore/v2.1/catalog/datasets/velib-disponibilite-en-temps-reel/exports/json`.
    pub fn export(
        &self,
        dataset: &str,
        params: &HashMap<String, String>,
        now: Timestamp,
    ) -> Result<Value, OdsError> {
        let tz = self.request(dataset, params)?;
        let limit = export_limit(params, self.stations.len())?;
        let now = now.as_second();
        Ok(Value::Array(
            (0..limit).map(|i| self.ods_record(i, now, &tz)).collect(),
        ))
    }

    fn request(
        &self,
        dataset: &str,
        params: &HashMap<String, String>,
    ) -> Result<TimeZone, OdsError> {
        if dataset != DATASET {
            return Err(ods_error(
                404,
                "NoSuchDatasetError",
                format!("Unknown dataset: {dataset}"),
            ));
        }
        refuse_unsupported(params)?;
        timezone(params)
    }

    /// A GBFS feed (`gbfs`, `system_information`, `station_information`, `station_status`)
    /// as of `now`; `base` is the URL the feeds are under.
    pub fn gbfs(&self, feed: &str, now: Timestamp, base: &str) -> Option<Value> {
        let now = now.as_second();
        let data = match feed {
            "gbfs" => {
                let feeds: Vec<Value> = [
                    "gbfs",
                    "system_information",
                    "station_information",
                    "station_status",
                ]
                .iter()
                .map(|f| json!({ "name": f, "url": format!("{base}{GBFS_PATH}/{f}.json") }))
                .collect();
                json!({ "en": { "feeds": feeds } })
            }
            "system_information" => json!({
                "system_id": "Paris",
                "language": "fr",
                "name": "Vélib' Métropole",
                "timezone": "Europe/Paris",
            }),
            "station_information" => {
                let stations: Vec<Value> = self
                    .stations
                    .iter()
                    .map(|s| {
                        json!({
                            "station_id": s.station_id,
                            "stationCode": s.code,
                            "name": s.name,
                            "lat": s.lat,
                            "lon": s.lon,
                            "capacity": s.capacity,
                            "station_opening_hours": Value::Null,
                        })
                    })
                    .collect();
                json!({ "stations": stations })
            }
            "station_status" => {
                let stations: Vec<Value> = (0..self.stations.len())
                    .map(|i| self.gbfs_status(i, now))
                    .collect();
                json!({ "stations": stations })
            }
            _ => return None,
        };
        Some(json!({ "lastUpdatedOther": now, "ttl": 60, "data": data }))
    }

    fn gbfs_status(&self, i: usize, now: i64) -> Value {
        let s = &self.stations[i];
        let r = self.seen_at(i, now);
        let open = u8::from(r.open);
        json!({
            "station_id": s.station_id,
            "num_bikes_available": r.bikes(),
            "numBikesAvailable": r.bikes(),
            "num_bikes_available_types": [{ "mechanical": r.mechanical }, { "ebike": r.ebike }],
            "num_docks_available": r.docks,
            "numDocksAvailable": r.docks,
            "is_installed": 1,
            "is_returning": open,
            "is_renting": open,
            "last_reported": r.at,
            "stationCode": s.code,
            "station_opening_hours": Value::Null,
        })
    }

    /// What polls at each of `polls` (in order) saw of every station: a report is a repeat
    /// when an earlier poll of the list saw it, late when it was delivered in a backlog
    /// episode.
    pub fn truth(&self, polls: &[Timestamp]) -> Vec<Seen> {
        Truth::new(self).polls(polls)
    }
}

/// Polls replayed in turn, remembering what each station's last poll saw, so that a long
/// replay can be written a part at a time.
#[derive(Debug)]
pub struct Truth<'a> {
    model: &'a Velib,
    last: Vec<Option<i64>>,
}

impl<'a> Truth<'a> {
    /// No poll seen yet.
    pub fn new(model: &'a Velib) -> Self {
        Truth {
            model,
            last: vec![None; model.stations.len()],
        }
    }

    /// What the next polls, at `polls` (in order), see of every station.
    pub fn polls(&mut self, polls: &[Timestamp]) -> Vec<Seen> {
        let model = self.model;
        let mut out = Vec::with_capacity(polls.len() * model.stations.len());
        for poll in polls {
            let now = poll.as_second();
            for (i, s) in model.stations.iter().enumerate() {
                let r = model.seen_at(i, now);
                let last = &mut self.last[i];
                let repeat = last.is_some_and(|t| t >= r.at);
                *last = Some(last.map_or(r.at, |t| t.max(r.at)));
                out.push(Seen {
                    polled_at: now,
                    stationcode: s.code.clone(),
                    reported_at: r.at,
                    repeat,
                    late: model.visible_at(i, r.at) - r.at > PROMPT_DELAY_MAX,
                    bikes: r.bikes(),
                    ebike: r.ebike,
                    docks: r.docks,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::draw::params;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn the_stations_are_the_real_export() {
        let stations = stations();
        assert_eq!(stations.len(), 1471, "every row parses");
        assert_eq!(STATIONS_TSV.lines().count(), 1472);
        let paris = stations.iter().filter(|s| s.commune == "Paris").count();
        assert_eq!(paris, 992);
        let ids: std::collections::HashSet<u64> = stations.iter().map(|s| s.station_id).collect();
        assert_eq!(ids.len(), 1471, "station ids are unique");
        let godard = stations.iter().find(|s| s.code == "16107").expect("16107");
        assert_eq!((godard.station_id, godard.capacity), (213688169, 35));
    }

    #[test]
    fn reports_follow_the_day_repeat_and_run_late_as_described() {
        let v = Velib::new(1);
        let n = v.stations().len();
        // A weekday.
        let bikes = |at: &str| -> u32 {
            (0..n)
                .map(|i| v.seen_at(i, t(at).as_second()).bikes())
                .sum()
        };
        let full = |at: &str| {
            (0..n)
                .filter(|i| {
                    v.seen_at(*i, t(at).as_second()).docks == 0 && v.stations()[*i].capacity > 0
                })
                .count()
        };
        let empty = |at: &str| {
            (0..n)
                .filter(|i| v.seen_at(*i, t(at).as_second()).bikes() == 0)
                .count()
        };
        assert!(bikes("2025-03-04T03:00:00Z") != bikes("2025-03-04T09:00:00Z"));
        // Stations run full and empty when the day pulls them (seen: ~260 full, ~350 empty at
        // 15:00 UTC; ~15 and ~30 at 21:00).
        assert!(full("2025-03-04T15:00:00Z") > 100 && empty("2025-03-04T15:00:00Z") > 100);
        assert!(full("2025-03-04T21:00:00Z") < 60);
        // A day of polls every minute.
        let polls: Vec<Timestamp> = (0..24 * 60)
            .map(|m| t("2025-03-04T00:00:00Z") + jiff::SignedDuration::from_mins(m))
            .collect();
        let truth = v.truth(&polls);
        assert_eq!(truth.len(), polls.len() * n);
        let share = |f: &dyn Fn(&Seen) -> bool| {
            truth.iter().filter(|s| f(s)).count() as f64 / truth.len() as f64
        };
        let repeats = share(&|s| s.repeat);
        let late = share(&|s| s.late && !s.repeat);
        assert!((0.05..0.5).contains(&repeats), "repeats {repeats}");
        assert!((0.0005..0.02).contains(&late), "late {late}");
        for s in &truth {
            let age = s.polled_at - s.reported_at;
            assert!(age >= 0, "a poll never sees the future");
            if !s.repeat && !s.late {
                assert!(age <= REPORT_PERIOD_MAX + PROMPT_DELAY_MAX + 60, "{s:?}");
            }
            if s.late && !s.repeat {
                assert!(age >= LATE_DELAY_MIN - 60, "{s:?}");
            }
        }
        // The same poll twice sees the same thing: a pure function of (seed, station, time).
        assert_eq!(v.truth(&polls[..3]), Velib::new(1).truth(&polls[..3]));
        assert_ne!(v.truth(&polls[..3]), Velib::new(2).truth(&polls[..3]));
    }

    #[test]
    fn both_shapes_agree_and_page_like_opendatasoft() {
        let v = Velib::new(3);
        let now = t("2025-03-04T08:00:00Z");
        let page = v
            .records(
                DATASET,
                &params(&[("limit", "100"), ("offset", "1400")]),
                now,
            )
            .expect("page");
        assert_eq!(page["total_count"], 1471);
        assert_eq!(page["results"].as_array().expect("results").len(), 71);
        let export = v.export(DATASET, &params(&[]), now).expect("export");
        let status = v.gbfs("station_status", now, "http://x").expect("feed");
        let stations = status["data"]["stations"].as_array().expect("stations");
        for (record, gbfs) in export.as_array().expect("array").iter().zip(stations) {
            assert_eq!(record["stationcode"], gbfs["stationCode"]);
            assert_eq!(record["numbikesavailable"], gbfs["num_bikes_available"]);
            assert_eq!(record["numdocksavailable"], gbfs["num_docks_available"]);
            let due: Timestamp = record["duedate"]
                .as_str()
                .expect("duedate")
                .parse()
                .expect("time");
            assert_eq!(
                due.as_second(),
                gbfs["last_reported"].as_i64().expect("seconds")
            );
        }
        assert_eq!(
            v.records(DATASET, &params(&[("limit", "101")]), now)
                .expect_err("too many")
                .status,
            400
        );
        assert_eq!(
            v.records("nope", &params(&[]), now)
                .expect_err("unknown")
                .status,
            404
        );
        assert!(v.gbfs("free_bike_status", now, "http://x").is_none());
    }
}

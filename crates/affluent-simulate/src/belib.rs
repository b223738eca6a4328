//! Paris's Belib' charging points on Opendatasoft's Explore API v2.1, as Paris Open Data
//! serves them: the real-time availability dataset and the static one, each through
//! `/records` (paged by `limit` ≤ 100 and `offset`, `offset + limit` ≤ 10,000) and
//! `/exports/json` (the whole dataset in one answer).
//!
//! The points are the 1,937 of the real static export (../shared/fixtures/opendatasoft, October
//! 2024, Ville de Paris, ODbL; `belib_points.csv`, written by scripts/fixtures/belib_points.py),
//! or as many as asked, cycling through them. A point's status is a pure function of (seed,
//! point, time), in 20-minute slots:
//! - 1 % of points are `En cours de mise en service` for good;
//! - maintenance: 2.5 % of point-days start an episode of 6 to 30 hours (`En maintenance`);
//! - `Inconnu`: 0.5 % of slots (the point stopped reporting);
//! - otherwise charging sessions in blocks (40 min at ≥ 50 kW, 80 min at 22 kW, 3 h below),
//!   occupied (`Occupé (en charge)`) with a probability that follows the day (55 % at night,
//!   30 % at midday, 42 % in the evening; 5 points lower on weekends) and the weather (rain
//!   adds 8 points and 4 more per mm, up to 20; cold below 5 °C 5 points);
//! - `Réservé`: 1 % of blocks (drawn from those not occupied); else `Disponible`.
//!
//! `last_updated` is when the current status began: each point's slots start at its own fixed
//! second of the hour, so the same episode always shows the same `last_updated`; it is looked
//! back up to 36 hours (longer than any maintenance episode); points being commissioned show
//! a fixed day of October 2024.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};

use crate::draw::{hash, name_key, uniform};
use crate::weather::Weather;

/// The points of the static export, one CSV row each.
pub const POINTS_CSV: &str = include_str!("belib_points.csv");

/// The real-time dataset's id.
pub const REALTIME: &str =
    "belib-points-de-recharge-pour-vehicules-electriques-disponibilite-temps-reel";
/// The static dataset's id.
pub const STATIC: &str = "belib-points-de-recharge-pour-vehicules-electriques-donnees-statiques";

/// Opendatasoft's ceiling: `offset + limit` of a `/records` call stays at or below it.
pub const RECORDS_CEILING: u64 = 10_000;
/// The largest `limit` of a `/records` call.
pub const MAX_LIMIT: u64 = 100;

/// The statuses a point reports.
pub const STATUSES: &[&str] = &[
    "Disponible",
    "Occupé (en charge)",
    "Réservé",
    "En maintenance",
    "Inconnu",
    "En cours de mise en service",
];

const SLOT_SECONDS: i64 = 20 * 60;
/// How far back `last_updated` looks for the start of a status: 36 hours, longer than any
/// maintenance episode, so only the permanent status needs a fixed start.
const LOOKBACK_SLOTS: i64 = 108;
const COMMISSIONING: &str = "En cours de mise en service";
/// 2024-10-01T00:00:00Z.
const COMMISSIONING_SINCE: i64 = 1_727_740_800;

/// One charging point (static data).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// `id_pdc_local` (also the real-time dataset's `id_pdc`).
    pub id_pdc_local: String,
    /// `id_pdc_itinerance`.
    pub id_pdc_itinerance: String,
    /// `id_station_local`.
    pub id_station_local: String,
    /// `id_station_itinerance`.
    pub id_station_itinerance: String,
    /// `nom_station`.
    pub nom_station: String,
    /// `adresse_station`.
    pub adresse_station: String,
    /// `arrondissement` (`15e Arrondissement`, `Paris centre`).
    pub arrondissement: String,
    /// `code_insee_commune` (`75115`), missing for some points.
    pub code_insee_commune: Option<String>,
    /// Longitude.
    pub lon: f64,
    /// Latitude.
    pub lat: f64,
    /// `puissance_nominale`, kW.
    pub power_kw: u32,
    /// The other static fields, as exported (text).
    pub other: Vec<(&'static str, String)>,
}

const OTHER_FIELDS: [&str; 9] = [
    "implantation_station",
    "nbre_pdc",
    "prise_type_2",
    "prise_type_combo_ccs",
    "prise_type_chademo",
    "prise_type_ef",
    "date_mise_en_service",
    "horaires",
    "condition_acces",
];

/// The points of [`POINTS_CSV`] (its fields hold no comma nor quote: a test checks it).
pub fn points() -> Vec<Point> {
    let mut lines = POINTS_CSV.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    lines
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != header.len() {
                return None;
            }
            let get = |name: &str| col(name).map(|i| f[i].to_string()).unwrap_or_default();
            Some(Point {
                id_pdc_local: get("id_pdc_local"),
                id_pdc_itinerance: get("id_pdc_itinerance"),
                id_station_local: get("id_station_local"),
                id_station_itinerance: get("id_station_itinerance"),
                nom_station: get("nom_station"),
                adresse_station: get("adresse_station"),
                arrondissement: get("arrondissement"),
                code_insee_commune: Some(get("code_insee_commune")).filter(|c| !c.is_empty()),
                lon: get("lon").parse().ok()?,
                lat: get("lat").parse().ok()?,
                power_kw: get("puissance_nominale").parse().unwrap_or(7),
                other: OTHER_FIELDS.iter().map(|k| (*k, get(k))).collect(),
            })
        })
        .collect()
}

/// The Belib' model: points and their statuses through time.
#[derive(Debug, Clone)]
pub struct Belib {
    seed: u64,
    points: Vec<Point>,
    keys: Vec<u64>,
    weather: Weather,
    paris: TimeZone,
}

/// Why a request has no answer: the HTTP status and Opendatasoft's error body.
#[derive(Debug, Clone, PartialEq)]
pub struct OdsError {
    /// HTTP status.
    pub status: u16,
    /// `{"error_code": .., "message": ..}`.
    pub body: Value,
}

/// Opendatasoft's 400 for a query parameter.
pub(crate) fn invalid(message: String) -> OdsError {
    ods_error(400, "InvalidRESTParameterError", message)
}

pub(crate) fn ods_error(status: u16, code: &str, message: String) -> OdsError {
    OdsError {
        status,
        body: json!({ "error_code": code, "message": message }),
    }
}

impl Belib {
    /// The 1,937 real points, statuses drawn from `seed`; the weather is `Weather::new(seed)`.
    pub fn new(seed: u64) -> Self {
        Self::with_points(seed, 0)
    }

    /// `n` points (0: the real 1,937), cycling through the real ones; the copies' ids end in
    /// `*cK` and their coordinates move by a few metres.
    pub fn with_points(seed: u64, n: usize) -> Self {
        let real = points();
        let points = if n == 0 || real.is_empty() {
            real
        } else {
            (0..n)
                .map(|i| {
                    let mut p = real[i % real.len()].clone();
                    let copy = i / real.len();
                    if copy > 0 {
                        p.id_pdc_local = format!("{}*c{copy}", p.id_pdc_local);
                        p.id_pdc_itinerance = format!("{}C{copy}", p.id_pdc_itinerance);
                        p.lon += 0.0001 * copy as f64;
                        p.lat += 0.0001 * copy as f64;
                    }
                    p
                })
                .collect()
        };
        let keys = points.iter().map(|p| name_key(&p.id_pdc_local)).collect();
        Self {
            seed,
            points,
            keys,
            weather: Weather::new(seed),
            paris: TimeZone::get("Europe/Paris").unwrap_or(TimeZone::UTC),
        }
    }

    /// The points.
    pub fn points(&self) -> &[Point] {
        &self.points
    }

    /// The weather the statuses follow.
    pub fn weather(&self) -> &Weather {
        &self.weather
    }

    fn occupancy(&self, at: Timestamp) -> f64 {
        let paris = at.to_zoned(self.paris.clone());
        let base = match paris.hour() {
            0..=6 => 0.55,
            7..=9 => 0.40,
            10..=16 => 0.30,
            17..=20 => 0.42,
            _ => 0.50,
        };
        let weekend = if paris.weekday().to_monday_one_offset() >= 6 {
            -0.05
        } else {
            0.0
        };
        let w = self.weather.truth(at);
        let rain = if w.rain > 0.0 {
            (0.08 + 0.04 * w.rain).min(0.2)
        } else {
            0.0
        };
        let cold = if w.temperature < 5.0 { 0.05 } else { 0.0 };
        base + weekend + rain + cold
    }

    /// The status of point `i` in slot `slot` (20-minute slots since the epoch).
    fn status_in(&self, i: usize, slot: i64) -> &'static str {
        let key = self.keys[i];
        let seed = self.seed;
        if uniform(hash(&[seed, key, 0xc0])) < 0.01 {
            return COMMISSIONING;
        }
        let t = slot * SLOT_SECONDS;
        let day = t.div_euclid(86_400);
        // An episode starts at any hour of its day and lasts up to 30 hours: one begun two
        // days before can still run.
        for d in [day, day - 1, day - 2] {
            let h = hash(&[seed, key, 0x3a1, d as u64]);
            if uniform(h) < 0.025 {
                let start = d * 86_400 + (h % 24) as i64 * 3600;
                let hours = 6 + (hash(&[h, 1]) % 25) as i64;
                if (start..start + hours * 3600).contains(&t) {
                    return "En maintenance";
                }
            }
        }
        if uniform(hash(&[seed, key, 0x1c, slot as u64])) < 0.005 {
            return "Inconnu";
        }
        let power = self.points[i].power_kw;
        let block_len = if power >= 50 {
            2
        } else if power >= 22 {
            4
        } else {
            9
        };
        let phase = (key % block_len as u64) as i64;
        let block = (slot + phase).div_euclid(block_len);
        let block_start = Timestamp::from_second((block * block_len - phase) * SLOT_SECONDS)
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let draw = uniform(hash(&[seed, key, 0x0cc, block as u64]));
        if draw < self.occupancy(block_start) {
            "Occupé (en charge)"
        } else if draw > 0.99 {
            "Réservé"
        } else {
            "Disponible"
        }
    }

    /// Point `i`'s status at `at` and when it began. Each point's 20-minute slots start at its
    /// own offset into the hour, so a status begins at a fixed time whichever snapshot sees it.
    pub fn status(&self, i: usize, at: Timestamp) -> (&'static str, Timestamp) {
        let offset = (self.keys[i] % SLOT_SECONDS as u64) as i64;
        let slot = (at.as_second() - offset).div_euclid(SLOT_SECONDS);
        let status = self.status_in(i, slot);
        if status == COMMISSIONING {
            // Being commissioned for good: since a fixed day of October 2024.
            let since = COMMISSIONING_SINCE + offset * 60;
            return (
                status,
                Timestamp::from_second(since.min(at.as_second())).unwrap_or(Timestamp::UNIX_EPOCH),
            );
        }
        let mut first = slot;
        while slot - first < LOOKBACK_SLOTS && self.status_in(i, first - 1) == status {
            first -= 1;
        }
        (
            status,
            Timestamp::from_second(first * SLOT_SECONDS + offset).unwrap_or(Timestamp::UNIX_EPOCH),
        )
    }

    /// The real-time record of point `i` at `at`, datetimes in `tz`.
    pub fn realtime_record(&self, i: usize, at: Timestamp, tz: &TimeZone) -> Value {
        let p = &self.points[i];
        let (status, since) = self.status(i, at);
        json!({
            "id_pdc": p.id_pdc_local,
            "statut_pdc": status,
            "last_updated": ods_datetime(since, tz),
            "adresse_station": p.adresse_station,
            "coordonneesxy": { "lon": p.lon, "lat": p.lat },
            "arrondissement": p.arrondissement,
            "code_insee_commune": p.code_insee_commune,
        })
    }

    /// The static record of point `i` (the IRVE fields of the export).
    pub fn static_record(&self, i: usize) -> Value {
        let p = &self.points[i];
        let mut v = json!({
            "id_pdc_local": p.id_pdc_local,
            "id_pdc_itinerance": p.id_pdc_itinerance,
            "id_station_local": p.id_station_local,
            "id_station_itinerance": p.id_station_itinerance,
            "nom_station": p.nom_station,
            "adresse_station": p.adresse_station,
            "arrondissement": p.arrondissement,
            "code_insee_commune": p.code_insee_commune,
            "coordonneesxy": { "lon": p.lon, "lat": p.lat },
            "statut_pdc": "En service",
            "puissance_nominale": p.power_kw.to_string(),
        });
        for (k, value) in &p.other {
            v[*k] = json!(value);
        }
        v
    }

    fn record(&self, dataset: &str, i: usize, at: Timestamp, tz: &TimeZone) -> Value {
        if dataset == REALTIME {
            self.realtime_record(i, at, tz)
        } else {
            self.static_record(i)
        }
    }

    fn dataset<'a>(&self, dataset: &'a str) -> Result<&'a str, OdsError> {
        if dataset == REALTIME || dataset == STATIC {
            Ok(dataset)
        } else {
            Err(ods_error(
                404,
                "NoSuchDatasetError",
                format!("Unknown dataset: {dataset}"),
            ))
        }
    }

    /// The dataset asked for and the time zone of its datetimes, or why not.
    fn request<'a>(
        &self,
        dataset: &'a str,
        params: &HashMap<String, String>,
    ) -> Result<(&'a str, TimeZone), OdsError> {
        let dataset = self.dataset(dataset)?;
        refuse_unsupported(params)?;
        Ok((dataset, timezone(params)?))
    }

    /// `GET /api/explore/v2.1/catalog/datasets/DATASET/records` at `now`.
    pub fn records(
        &self,
        dataset: &str,
        params: &HashMap<String, String>,
        now: Timestamp,
    ) -> Result<Value, OdsError> {
        let (dataset, tz) = self.request(dataset, params)?;
        let (from, to) = page(params, self.points.len())?;
        let total = self.points.len();
        let results: Vec<Value> = (from..to)
            .map(|i| self.record(dataset, i, now, &tz))
            .collect();
        Ok(json!({ "total_count": total, "results": results }))
    }

    /// `GET /api/explore/v2.1/catalog/datasets/DATASET/exports/json` at `now`: every record
    /// (or the first `limit`), no ceiling.
    pub fn export(
        &self,
        dataset: &str,
        params: &HashMap<String, String>,
        now: Timestamp,
    ) -> Result<Value, OdsError> {
        let (dataset, tz) = self.request(dataset, params)?;
        let limit = export_limit(params, self.points.len())?;
        Ok(Value::Array(
            (0..limit)
                .map(|i| self.record(dataset, i, now, &tz))
                .collect(),
        ))
    }

    /// Every point's real-time record at each of `times`, for checks against what a pipeline
    /// loaded (the ground truth).
    pub fn snapshots(&self, times: &[Timestamp]) -> Vec<(Timestamp, Vec<Value>)> {
        times
            .iter()
            .map(|t| {
                (
                    *t,
                    (0..self.points.len())
                        .map(|i| self.realtime_record(i, *t, &TimeZone::UTC))
                        .collect(),
                )
            })
            .collect()
    }
}

/// `where`, `select`, `group_by`, `order_by`, `refine`, `exclude` and `q` are not simulated:
/// refused, so that a project never reads the whole dataset believing it filtered.
pub(crate) fn refuse_unsupported(params: &HashMap<String, String>) -> Result<(), OdsError> {
    for name in [
        "where", "select", "group_by", "order_by", "refine", "exclude", "q",
    ] {
        if params.contains_key(name) {
            return Err(invalid(format!(
                "the simulator does not implement the `{name}` parameter (Opendatasoft's ODSQL); ask the real API, or filter in a model"
            )));
        }
    }
    Ok(())
}

pub(crate) fn timezone(params: &HashMap<String, String>) -> Result<TimeZone, OdsError> {
    match params.get("timezone") {
        None => Ok(TimeZone::UTC),
        Some(name) if name == "UTC" => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|_| {
            invalid(format!(
                "Invalid value for timezone API parameter: unknown time zone {name:?}."
            ))
        }),
    }
}

/// Opendatasoft's datetime text: `2024-10-09T15:04:05+00:00`.
pub(crate) fn ods_datetime(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned(tz.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// The records `[from, to)` of a `/records` call over `total` records: `limit` (default 10,
/// at most [`MAX_LIMIT`]) from `offset`, within [`RECORDS_CEILING`]; Opendatasoft's 400
/// otherwise.
pub(crate) fn page(
    params: &HashMap<String, String>,
    total: usize,
) -> Result<(usize, usize), OdsError> {
    let number = |name: &str, default: u64| -> Result<u64, OdsError> {
        match params.get(name) {
            None => Ok(default),
            Some(text) => text.trim().parse::<u64>().map_err(|_| {
                invalid(format!(
                    "Invalid value for {name} API parameter: {text:?} is not an integer."
                ))
            }),
        }
    };
    let limit = number("limit", 10)?;
    let offset = number("offset", 0)?;
    if limit > MAX_LIMIT {
        return Err(invalid(format!(
            "Invalid value for limit API parameter: {limit} was found but 0 <= limit <= {MAX_LIMIT} is expected."
        )));
    }
    if offset
        .checked_add(limit)
        .is_none_or(|end| end > RECORDS_CEILING)
    {
        return Err(invalid(format!(
            "Invalid value for limit and offset API parameters: the sum of offset and limit must be lower than or equal to {RECORDS_CEILING}, found {}. Use the exports endpoint to get more records.",
            offset.saturating_add(limit)
        )));
    }
    let from = (offset as usize).min(total);
    Ok((from, (from + limit as usize).min(total)))
}

/// How many records an `/exports/json` call over `total` records answers: `limit` (-1 or
/// missing: all).
pub(crate) fn export_limit(
    params: &HashMap<String, String>,
    total: usize,
) -> Result<usize, OdsError> {
    match params.get("limit").map(|l| l.trim().parse::<i64>()) {
        None | Some(Ok(-1)) => Ok(total),
        Some(Ok(n)) if n >= 0 => Ok((n as usize).min(total)),
        Some(_) => Err(invalid(
            "Invalid value for limit API parameter: an integer >= -1 is expected.".into(),
        )),
    }
}

/// The hours of `[from, to)`, for [`Belib::snapshots`].
pub fn hours(from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let mut t = from;
    while t < to {
        out.push(t);
        t += 1.hour();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::draw::params;

    #[test]
    fn the_points_are_the_real_export() {
        let points = points();
        assert_eq!(points.len(), 1937, "every row of the CSV parses");
        assert_eq!(POINTS_CSV.lines().count(), 1938);
        assert!(
            !POINTS_CSV.contains('"'),
            "no quoted field: a comma split is exact"
        );
        let centre = points
            .iter()
            .filter(|p| p.arrondissement == "Paris centre")
            .count();
        assert_eq!(centre, 163);
        assert!(
            points
                .iter()
                .all(|p| (2.2..2.5).contains(&p.lon) && (48.8..48.91).contains(&p.lat))
        );
    }

    #[test]
    fn statuses_follow_the_day_and_last_updated_when_they_began() {
        let b = Belib::new(1);
        let night: Timestamp = "2025-03-04T02:00:00Z".parse().unwrap();
        let midday: Timestamp = "2025-03-04T11:00:00Z".parse().unwrap();
        let share = |t: Timestamp, s: &str| {
            (0..b.points().len())
                .filter(|i| b.status(*i, t).0 == s)
                .count() as f64
                / b.points().len() as f64
        };
        let (n, m) = (
            share(night, "Occupé (en charge)"),
            share(midday, "Occupé (en charge)"),
        );
        assert!(n > m + 0.1, "night {n} vs midday {m}");
        assert!((0.002..0.06).contains(&share(midday, "En maintenance")));
        for s in STATUSES {
            let seen = (0..48).any(|h| share(midday + (h * 7).hours(), s) > 0.0);
            assert!(seen, "{s} appears");
        }
        // last_updated: not after the snapshot; the status held since then.
        for i in 0..200 {
            let (status, since) = b.status(i, midday);
            assert!(since <= midday);
            if status != COMMISSIONING {
                assert!(
                    midday.as_second() - since.as_second() <= (LOOKBACK_SLOTS + 1) * SLOT_SECONDS
                );
            }
            assert_eq!(b.status(i, since).0, status, "point {i}");
        }
        // An episode shows the same last_updated in every snapshot that sees it.
        let later = midday + 1.hour();
        for i in 0..b.points().len() {
            let (s1, since1) = b.status(i, midday);
            let (s2, since2) = b.status(i, later);
            if since2 <= midday {
                assert_eq!((s1, since1), (s2, since2), "point {i}");
            }
        }
        let huge = b.records(
            REALTIME,
            &params(&[("limit", "1"), ("offset", "18446744073709551615")]),
            midday,
        );
        assert_eq!(huge.unwrap_err().status, 400);
        // Statuses change through the day, so snapshots differ.
        let changed = (0..b.points().len())
            .filter(|i| b.status(*i, night).0 != b.status(*i, midday).0)
            .count();
        assert!(changed > 300, "{changed} points changed");
        assert_eq!(Belib::new(1).status(5, midday), b.status(5, midday));
    }

    #[test]
    fn records_page_with_opendatasoft_limits_and_exports_have_none() {
        let b = Belib::with_points(1, 12_000);
        let now: Timestamp = "2025-03-04T11:00:00Z".parse().unwrap();
        let page = b
            .records(
                REALTIME,
                &params(&[("limit", "100"), ("offset", "9900")]),
                now,
            )
            .unwrap();
        assert_eq!(page["total_count"], 12_000);
        assert_eq!(page["results"].as_array().unwrap().len(), 100);
        let r = &page["results"][0];
        assert!(r["id_pdc"].as_str().unwrap().starts_with("FR*V75*"));
        assert!(r["last_updated"].as_str().unwrap().ends_with("+00:00"));
        assert!(r["coordonneesxy"]["lon"].is_f64());
        let past = b
            .records(
                REALTIME,
                &params(&[("limit", "100"), ("offset", "9901")]),
                now,
            )
            .unwrap_err();
        assert_eq!(past.status, 400);
        assert!(
            past.body["message"]
                .as_str()
                .unwrap()
                .contains("exports endpoint")
        );
        let big = b
            .records(REALTIME, &params(&[("limit", "101")]), now)
            .unwrap_err();
        assert_eq!(big.body["error_code"], "InvalidRESTParameterError");
        let all = b.export(REALTIME, &params(&[]), now).unwrap();
        assert_eq!(all.as_array().unwrap().len(), 12_000);
        let static_page = b.records(STATIC, &params(&[("limit", "2")]), now).unwrap();
        assert_eq!(static_page["results"][0]["statut_pdc"], "En service");
        assert!(static_page["results"][0]["puissance_nominale"].is_string());
        let paris = b
            .records(
                REALTIME,
                &params(&[("limit", "1"), ("timezone", "Europe/Paris")]),
                now,
            )
            .unwrap();
        assert!(
            paris["results"][0]["last_updated"]
                .as_str()
                .unwrap()
                .ends_with("+01:00")
        );
        assert_eq!(
            b.records("velib", &params(&[]), now).unwrap_err().status,
            404
        );
        assert_eq!(
            b.records(
                REALTIME,
                &params(&[("where", "statut_pdc='Disponible'")]),
                now
            )
            .unwrap_err()
            .status,
            400
        );
    }
}

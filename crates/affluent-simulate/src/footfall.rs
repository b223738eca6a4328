//! Seed 004's visitor-counter API: `GET /get_visitor_count?date_time=YYYY-MM-DD HH:MM
//! &agency_name=NAME&counter_id=N&count_unit=visitors`.
//!
//! Every number is a pure function of (seed, agency, date, counter, hour), so answers do not
//! depend on the order or number of requests, and two servers with one seed agree.
//!
//! The model (the seed's facts): base daily traffic per agency (its CSV); weekday multipliers Mon
//! 1.0, Tue 1.25, Wed 1.3, Thu 1.6, Fri 1.8, closed Sat/Sun; daily traffic drawn around that with
//! a 15 % standard deviation; split over counters (1: 100 %; 2: 80/20; 3: 40/40/20); hourly shares
//! 9h 20 %, 10h 25 %, 11h 25 %, 13h 10 %, 14h 10 %, 15h 2 %, 16h 3 %, 17h 5 %, other hours closed.
//! Closed answers -1; a broken counter answers -10 for the whole day (0.5 % of counter-days); a
//! badly counting counter reports 20 % of its traffic that day (1.5 %).

use jiff::civil::{Date, DateTime, Weekday};
use serde::Serialize;

use crate::draw::{hash, name_key, normal, uniform};

/// The agency list the seed ships: name, base daily traffic, number of counters.
pub const AGENCIES_CSV: &str = include_str!("agencies.csv");

/// One agency.
#[derive(Debug, Clone, PartialEq)]
pub struct Agency {
    /// The agency's name, as the API spells it (`Lyon_1`).
    pub name: String,
    /// Visitors on an ordinary day.
    pub base_traffic: f64,
    /// Counters `0..counters` at its doors.
    pub counters: u32,
}

/// The agencies of [`AGENCIES_CSV`].
pub fn agencies() -> Vec<Agency> {
    AGENCIES_CSV
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split(',').collect();
            Some(Agency {
                name: f.first()?.to_string(),
                base_traffic: f.get(3)?.parse().ok()?,
                counters: f.get(4)?.parse().ok()?,
            })
        })
        .collect()
}

/// Closed hour.
pub const CLOSED: i64 = -1;
/// Broken counter.
pub const BROKEN: i64 = -10;

/// One answer of the API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    /// The agency.
    pub agency_name: String,
    /// The hour, `YYYY-MM-DD HH:MM` (local).
    pub date_time: String,
    /// Visitors that hour ([`CLOSED`], [`BROKEN`] are the API's markers).
    pub visitor_count: i64,
    /// Always `visitors`.
    pub unit: String,
    /// The counter, when one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter_id: Option<u32>,
}

/// Why a request has no reading (the API answers 404 with this `detail`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `date_time` does not parse.
    #[error("date_time {0:?} is not a date and time in the format YYYY-MM-DD HH:MM")]
    BadDate(String),
    /// No such agency.
    #[error("unknown agency {0:?}")]
    UnknownAgency(String),
    /// No such counter at the agency.
    #[error("agency {agency} has counters 0 to {last}, not {counter}")]
    UnknownCounter {
        /// The agency.
        agency: String,
        /// The counter asked for.
        counter: i64,
        /// Its last counter.
        last: u32,
    },
    /// A unit other than visitors.
    #[error("unknown count_unit {0:?}: only \"visitors\" is counted")]
    UnknownUnit(String),
}

/// The deterministic model.
#[derive(Debug, Clone)]
pub struct Footfall {
    seed: u64,
    agencies: Vec<Agency>,
}

fn weekday_multiplier(day: Weekday) -> Option<f64> {
    match day {
        Weekday::Monday => Some(1.0),
        Weekday::Tuesday => Some(1.25),
        Weekday::Wednesday => Some(1.3),
        Weekday::Thursday => Some(1.6),
        Weekday::Friday => Some(1.8),
        Weekday::Saturday | Weekday::Sunday => None,
    }
}

/// Share of a day's visitors in each opening hour.
pub fn hour_share(hour: i8) -> Option<f64> {
    Some(match hour {
        9 => 0.20,
        10 => 0.25,
        11 => 0.25,
        13 => 0.10,
        14 => 0.10,
        15 => 0.02,
        16 => 0.03,
        17 => 0.05,
        _ => return None,
    })
}

fn counter_split(counters: u32, counter: u32) -> f64 {
    match (counters, counter) {
        (1, _) => 1.0,
        (2, 0) => 0.8,
        (2, _) => 0.2,
        (3, 2) => 0.2,
        (3, _) => 0.4,
        // More counters than the seed knows: 80 % over the first half, 20 % over the rest.
        (n, c) => {
            let first = n.div_ceil(2);
            if c < first {
                0.8 / f64::from(first)
            } else {
                0.2 / f64::from(n - first)
            }
        }
    }
}

impl Footfall {
    /// The model for a seed: the same seed gives the same answers.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            agencies: agencies(),
        }
    }

    /// The agencies it answers for.
    pub fn agencies(&self) -> &[Agency] {
        &self.agencies
    }

    fn day_key(date: Date) -> u64 {
        (i64::from(date.year()) * 400 + i64::from(date.day_of_year())) as u64
    }

    /// The agency's visitors on a day (before the counter split), `None` when closed.
    pub fn daily_traffic(&self, agency: &Agency, date: Date) -> Option<f64> {
        let multiplier = weekday_multiplier(date.weekday())?;
        let h = hash(&[self.seed, name_key(&agency.name), Self::day_key(date), 1]);
        Some((agency.base_traffic * multiplier * (1.0 + 0.15 * normal(h))).max(0.0))
    }

    /// How a counter behaves on a day: 1.0, 0.2 (badly counting), or `None` (broken).
    pub fn counter_health(&self, agency: &Agency, date: Date, counter: u32) -> Option<f64> {
        let draw = uniform(hash(&[
            self.seed,
            name_key(&agency.name),
            Self::day_key(date),
            2,
            u64::from(counter),
        ]));
        if draw < 0.005 {
            None
        } else if draw < 0.02 {
            Some(0.2)
        } else {
            Some(1.0)
        }
    }

    /// One counter's reading for one hour.
    pub fn count(&self, agency: &Agency, at: DateTime, counter: u32) -> i64 {
        let date = at.date();
        let Some(health) = self.counter_health(agency, date, counter) else {
            return BROKEN;
        };
        let (Some(daily), Some(share)) = (self.daily_traffic(agency, date), hour_share(at.hour()))
        else {
            return CLOSED;
        };
        (daily * counter_split(agency.counters, counter) * share * health).round() as i64
    }

    /// Answers one request as the seed's API does.
    pub fn answer(
        &self,
        date_time: &str,
        agency_name: &str,
        counter_id: Option<i64>,
        count_unit: Option<&str>,
    ) -> Result<Reading, Refusal> {
        let at = parse_stamp(date_time).ok_or_else(|| Refusal::BadDate(date_time.to_string()))?;
        let agency = self
            .agencies
            .iter()
            .find(|a| a.name == agency_name)
            .ok_or_else(|| Refusal::UnknownAgency(agency_name.to_string()))?;
        if let Some(unit) = count_unit
            && unit != "visitors"
        {
            return Err(Refusal::UnknownUnit(unit.to_string()));
        }
        let stamp = at.strftime("%Y-%m-%d %H:%M").to_string();
        let (visitor_count, counter_id) = match counter_id {
            None | Some(-1) => {
                // The agency's total: closed if the branch is, else the working counters' sum.
                let counts: Vec<i64> = (0..agency.counters)
                    .map(|c| self.count(agency, at, c))
                    .collect();
                let total = if counts.iter().all(|c| *c == CLOSED || *c == BROKEN)
                    && counts.contains(&CLOSED)
                {
                    CLOSED
                } else {
                    counts.iter().filter(|c| **c >= 0).sum()
                };
                (total, None)
            }
            Some(c) if (0..i64::from(agency.counters)).contains(&c) => {
                let c = c as u32;
                (self.count(agency, at, c), Some(c))
            }
            Some(c) => {
                return Err(Refusal::UnknownCounter {
                    agency: agency.name.clone(),
                    counter: c,
                    last: agency.counters.saturating_sub(1),
                });
            }
        };
        Ok(Reading {
            agency_name: agency.name.clone(),
            date_time: stamp,
            visitor_count,
            unit: "visitors".into(),
            counter_id,
        })
    }
}

/// `YYYY-MM-DD HH:MM` (also `T` as separator, and the seed's `YYYY-MM-DD_HH`).
pub fn parse_stamp(text: &str) -> Option<DateTime> {
    let text = text.trim();
    if let Ok(dt) = DateTime::strptime("%Y-%m-%d %H:%M", text) {
        return Some(dt);
    }
    if let Ok(dt) = DateTime::strptime("%Y-%m-%dT%H:%M", text) {
        return Some(dt);
    }
    DateTime::strptime("%Y-%m-%d_%H", text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_follow_the_seeds_model() {
        let f = Footfall::new(7);
        let lyon = &f.agencies()[0];
        assert_eq!(lyon.name, "Lyon_1");
        assert_eq!(f.agencies().len(), 11);
        // Saturday and Sunday closed; night hours closed.
        let sat = DateTime::constant(2024, 3, 2, 10, 0, 0, 0);
        assert!(f.count(lyon, sat, 0) == CLOSED || f.count(lyon, sat, 0) == BROKEN);
        let night = DateTime::constant(2024, 3, 4, 3, 0, 0, 0);
        let c = f.count(lyon, night, 0);
        assert!(c == CLOSED || c == BROKEN);
        // Over a year of weekdays, the 3 counters split about 40/40/20 and Friday is busier.
        let mut per_counter = [0i64; 3];
        let mut mondays = 0i64;
        let mut fridays = 0i64;
        let mut broken = 0;
        let mut days = 0;
        let mut date = Date::constant(2024, 1, 1);
        while date.year() == 2024 {
            for counter in 0..3u32 {
                days += 1;
                for hour in 0..24 {
                    let v = f.count(lyon, date.at(hour, 0, 0, 0), counter);
                    if v == BROKEN {
                        broken += 1;
                        continue;
                    }
                    if v > 0 {
                        per_counter[counter as usize] += v;
                        match date.weekday() {
                            Weekday::Monday => mondays += v,
                            Weekday::Friday => fridays += v,
                            _ => {}
                        }
                    }
                }
            }
            date = date.tomorrow().expect("date");
        }
        let total: i64 = per_counter.iter().sum();
        let share = |i: usize| per_counter[i] as f64 / total as f64;
        assert!(
            (share(0) - 0.4).abs() < 0.03 && (share(2) - 0.2).abs() < 0.03,
            "{per_counter:?}"
        );
        let ratio = fridays as f64 / mondays as f64;
        assert!((ratio - 1.8).abs() < 0.2, "Friday/Monday {ratio}");
        // Broken counter-days come in whole days (24 readings each), about 0.5 %.
        assert_eq!(broken % 24, 0);
        let broken_days = f64::from(broken / 24) / f64::from(days);
        assert!(broken_days < 0.02, "{broken_days}");
    }

    #[test]
    fn answers_are_deterministic_and_refusals_are_explained() {
        let a = Footfall::new(42);
        let b = Footfall::new(42);
        let r = a
            .answer("2024-03-05 10:00", "Lyon_2", Some(1), Some("visitors"))
            .expect("reading");
        assert_eq!(
            r,
            b.answer("2024-03-05 10:00", "Lyon_2", Some(1), None)
                .expect("reading")
        );
        assert_eq!(r.date_time, "2024-03-05 10:00");
        assert_eq!(r.counter_id, Some(1));
        let total = a
            .answer("2024-03-05 10:00", "Lyon_2", None, None)
            .expect("total");
        assert_eq!(total.counter_id, None);
        let parts: i64 = (0..2)
            .map(|c| {
                a.answer("2024-03-05 10:00", "Lyon_2", Some(c), None)
                    .expect("r")
                    .visitor_count
            })
            .filter(|v| *v >= 0)
            .sum();
        assert_eq!(total.visitor_count, parts);
        assert!(matches!(
            a.answer("2024-13-05 10:00", "Lyon_2", Some(0), None),
            Err(Refusal::BadDate(_))
        ));
        assert!(matches!(
            a.answer("2024-03-05 10:00", "Paris_9", Some(0), None),
            Err(Refusal::UnknownAgency(_))
        ));
        let e = a
            .answer("2024-03-05 10:00", "Lyon_3", Some(1), None)
            .expect_err("one counter");
        assert_eq!(e.to_string(), "agency Lyon_3 has counters 0 to 0, not 1");
    }
}

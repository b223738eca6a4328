//! Paris weather, hour by hour, and two forecast APIs over it: Open-Meteo's `GET /v1/forecast`
//! (columnar `hourly` arrays, as in the capture in ../shared/fixtures/weather) and
//! infoclimat.fr's `GET /public-api/gfs/json` (one object per 3-hour step, Kelvin and Pascal).
//!
//! The "truth" is a pure function of (seed, UTC hour): a seasonal mean (4.5 °C in mid-January,
//! 20.5 °C in mid-July), a day-to-day anomaly interpolated through the day, a diurnal cycle
//! (coolest at 03:00, warmest at 15:00 UTC), wet days (35 %, 45 % from October to March) with
//! rain in 3-hour spells (about 50 mm a month), and a daily wind. A forecast issued at time τ for a later hour is the
//! truth plus an error that grows with the lead time (0.5 °C per day of lead for temperature);
//! hours before τ are the truth, so `past_days` returns what happened.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde_json::{Map, Value, json};

use crate::draw::{hash, normal, uniform};

/// One hour's weather.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hour {
    /// Air temperature at 2 m, °C.
    pub temperature: f64,
    /// Relative humidity at 2 m, %.
    pub humidity: f64,
    /// Rain of the hour, mm.
    pub rain: f64,
    /// Cloud cover, %.
    pub cloud_cover: f64,
    /// Mean wind at 10 m, km/h.
    pub wind_speed: f64,
    /// Gusts at 10 m, km/h.
    pub wind_gusts: f64,
    /// Mean sea-level pressure, hPa.
    pub pressure: f64,
}

/// The weather of the simulated city.
#[derive(Debug, Clone)]
pub struct Weather {
    seed: u64,
}

/// The hourly variables Open-Meteo's simulator answers, with their units.
pub const OPEN_METEO_HOURLY: &[(&str, &str)] = &[
    ("temperature_2m", "°C"),
    ("relative_humidity_2m", "%"),
    ("precipitation", "mm"),
    ("rain", "mm"),
    ("cloud_cover", "%"),
    ("wind_speed_10m", "km/h"),
    ("wind_gusts_10m", "km/h"),
    ("pressure_msl", "hPa"),
];

/// The daily variables, with their units.
pub const OPEN_METEO_DAILY: &[(&str, &str)] = &[
    ("temperature_2m_max", "°C"),
    ("temperature_2m_min", "°C"),
    ("precipitation_sum", "mm"),
    ("rain_sum", "mm"),
    ("wind_speed_10m_max", "km/h"),
];

fn hour_index(t: Timestamp) -> i64 {
    t.as_second().div_euclid(3600)
}

fn day_index(hour: i64) -> i64 {
    hour.div_euclid(24)
}

impl Weather {
    /// The weather for a seed.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    fn anomaly(&self, day: i64) -> f64 {
        3.0 * normal(hash(&[self.seed, 0x7e, day as u64]))
    }

    fn wet(&self, day: i64) -> bool {
        let month = Timestamp::from_second(day * 86_400)
            .map(|t| t.to_zoned(TimeZone::UTC).month())
            .unwrap_or(1);
        let p = if (4..=9).contains(&month) { 0.35 } else { 0.45 };
        uniform(hash(&[self.seed, 0x3e7, day as u64])) < p
    }

    /// The weather of the hour starting at `hour` (hours since the epoch, UTC).
    fn truth_at(&self, hour: i64) -> Hour {
        let day = day_index(hour);
        let h = hour.rem_euclid(24) as f64;
        let doy = Timestamp::from_second(day * 86_400)
            .map(|t| f64::from(t.to_zoned(TimeZone::UTC).day_of_year()) - 0.5)
            .unwrap_or(0.0)
            / 365.25;
        let seasonal = 12.5 - 8.0 * (2.0 * std::f64::consts::PI * (doy - 15.0 / 365.0)).cos();
        // The anomaly moves from one day's value to the next through the day.
        let frac = h / 24.0;
        let anomaly = self.anomaly(day) * (1.0 - frac) + self.anomaly(day + 1) * frac;
        let diurnal = -4.0 * (2.0 * std::f64::consts::PI * (h - 3.0) / 24.0).cos();
        let spell = hour.div_euclid(3);
        let rain = if self.wet(day) && uniform(hash(&[self.seed, 0x5a1, spell as u64])) < 0.3 {
            let draw = uniform(hash(&[self.seed, 0x5a2, hour as u64]));
            // Exponential with a mean of 0.6 mm/h, in tenths of a millimetre (about 50 mm a
            // month, as in Paris).
            ((-0.6 * draw.ln()) * 10.0).round().max(1.0) / 10.0
        } else {
            0.0
        };
        let wind_day = 8.0 + 17.0 * uniform(hash(&[self.seed, 0x714d, day as u64]));
        let wind =
            (wind_day * (1.0 + 0.25 * normal(hash(&[self.seed, 0x714e, hour as u64])))).max(0.0);
        let cloud = if rain > 0.0 {
            90.0 + 10.0 * uniform(hash(&[self.seed, 0xc1, hour as u64]))
        } else {
            100.0 * uniform(hash(&[self.seed, 0xc2, spell as u64])).powf(1.5)
        };
        let temperature = seasonal + anomaly + diurnal - if rain > 0.0 { 1.0 } else { 0.0 };
        Hour {
            temperature: round1(temperature),
            humidity: round1((60.0 + 0.3 * cloud + 2.0 * rain).min(100.0)),
            rain,
            cloud_cover: cloud.round(),
            wind_speed: round1(wind),
            wind_gusts: round1(wind * 1.6),
            pressure: round1(1016.0 - 8.0 * self.anomaly(day + 2) / 3.0 - 2.0 * rain),
        }
    }

    /// The weather of the hour holding `t`.
    pub fn truth(&self, t: Timestamp) -> Hour {
        self.truth_at(hour_index(t))
    }

    /// What a forecast issued at `issued` says of the hour holding `t`: the truth for hours
    /// already begun, the truth plus a lead-dependent error after.
    pub fn forecast(&self, issued: Timestamp, t: Timestamp) -> Hour {
        let (hi, ht) = (hour_index(issued), hour_index(t));
        let truth = self.truth_at(ht);
        if ht <= hi {
            return truth;
        }
        let lead_days = (ht - hi) as f64 / 24.0;
        // One error per issue day and target hour: forecasts of one day agree with each other.
        let key = |k: u64| hash(&[self.seed, k, day_index(hi) as u64, ht as u64]);
        let rain_factor = (1.0 + 0.3 * lead_days.sqrt() * normal(key(0xf3))).max(0.0);
        let wind = (truth.wind_speed * (1.0 + 0.08 * lead_days * normal(key(0xf2)))).max(0.0);
        Hour {
            temperature: round1(truth.temperature + 0.5 * lead_days * normal(key(0xf1))),
            rain: round1(truth.rain * rain_factor),
            wind_speed: round1(wind),
            wind_gusts: round1(wind * 1.6),
            ..truth
        }
    }

    /// Rain of the `hours` hours before `t` (the hours ending at `t`), as forecast at `now`.
    fn rain_before(&self, now: Timestamp, t: Timestamp, hours: i64) -> f64 {
        round1(
            (1..=hours)
                .map(|k| {
                    t.checked_sub(k.hours())
                        .map_or(0.0, |h| self.forecast(now, h).rain)
                })
                .sum(),
        )
    }

    /// Answers Open-Meteo's `GET /v1/forecast` as of `now`; `Err` is the API's 400 reason.
    pub fn open_meteo(
        &self,
        params: &HashMap<String, String>,
        now: Timestamp,
    ) -> Result<Value, String> {
        let coordinate = |name: &str, limit: f64| -> Result<f64, String> {
            let text = params
                .get(name)
                .ok_or_else(|| format!("Parameter '{name}' is required"))?;
            let v: f64 = text
                .trim()
                .parse()
                .map_err(|_| format!("Parameter '{name}' must be a number, got '{text}'"))?;
            if v.abs() > limit {
                return Err(format!(
                    "Parameter '{name}' must be between -{limit} and {limit}"
                ));
            }
            Ok(v)
        };
        let latitude = coordinate("latitude", 90.0)?;
        let longitude = coordinate("longitude", 180.0)?;
        let days = |name: &str, default: i64, max: i64| -> Result<i64, String> {
            match params.get(name) {
                None => Ok(default),
                Some(text) => match text.trim().parse::<i64>() {
                    Ok(v) if (0..=max).contains(&v) => Ok(v),
                    _ => Err(format!(
                        "Parameter '{name}' must be an integer between 0 and {max}, got '{text}'"
                    )),
                },
            }
        };
        let forecast_days = days("forecast_days", 7, 16)?;
        let past_days = days("past_days", 0, 92)?;
        let step = match params.get("temporal_resolution").map(String::as_str) {
            None | Some("native") | Some("hourly_1") => 1,
            Some("hourly_3") => 3,
            Some("hourly_6") => 6,
            Some(other) => {
                return Err(format!(
                    "Cannot initialize TemporalResolution from invalid String value {other}"
                ));
            }
        };
        let tz_name = params.get("timezone").map(String::as_str).unwrap_or("GMT");
        let tz = match tz_name {
            "GMT" | "UTC" => TimeZone::UTC,
            "auto" => TimeZone::get("Europe/Paris").map_err(|e| e.to_string())?,
            name => TimeZone::get(name).map_err(|_| format!("Invalid timezone '{name}'"))?,
        };
        let unixtime = match params.get("timeformat").map(String::as_str) {
            None | Some("iso8601") => false,
            Some("unixtime") => true,
            Some(other) => {
                return Err(format!(
                    "Cannot initialize TimeFormat from invalid String value {other}"
                ));
            }
        };
        let variables = |name: &str,
                         known: &[(&str, &str)]|
         -> Result<Vec<(String, String)>, String> {
            let Some(list) = params.get(name) else {
                return Ok(Vec::new());
            };
            list.split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    known
                        .iter()
                        .find(|(k, _)| *k == v)
                        .map(|(k, u)| (k.to_string(), u.to_string()))
                        .ok_or_else(|| {
                            format!(
                                "Cannot initialize WeatherVariable from invalid String value {v} for key {name}"
                            )
                        })
                })
                .collect()
        };
        let hourly = variables("hourly", OPEN_METEO_HOURLY)?;
        let daily = variables("daily", OPEN_METEO_DAILY)?;

        let local_now = now.to_zoned(tz.clone());
        let today = local_now.date();
        let first_day = today
            .checked_sub(past_days.days())
            .map_err(|e| e.to_string())?;
        let end_day = today
            .checked_add(forecast_days.days())
            .map_err(|e| e.to_string())?;
        let midnight = |d: jiff::civil::Date| -> Result<Zoned, String> {
            d.to_zoned(tz.clone()).map_err(|e| e.to_string())
        };
        let start = midnight(first_day)?.timestamp();
        let end = midnight(end_day)?.timestamp();
        let stamp = |t: Timestamp| -> Value {
            if unixtime {
                json!(t.as_second())
            } else {
                json!(
                    t.to_zoned(tz.clone())
                        .strftime("%Y-%m-%dT%H:%M")
                        .to_string()
                )
            }
        };
        let offset = tz.to_offset(now).seconds();
        let mut body = json!({
            "latitude": (latitude * 100.0).round() / 100.0,
            "longitude": (longitude * 100.0).round() / 100.0,
            "generationtime_ms": 0.05,
            "utc_offset_seconds": offset,
            "timezone": if tz == TimeZone::UTC { "GMT".to_string() } else { tz.iana_name().unwrap_or("GMT").to_string() },
            "timezone_abbreviation": local_now.strftime("%Z").to_string(),
            "elevation": 43.0,
        });
        if !hourly.is_empty() {
            let mut times = Vec::new();
            let mut t = start;
            let mut values: Vec<Vec<Value>> = vec![Vec::new(); hourly.len()];
            while t < end {
                times.push(stamp(t));
                // An instant's value for temperature and the like; for rain and precipitation
                // the sum over the preceding step (Open-Meteo's convention).
                let at = self.forecast(now, t);
                let rain = self.rain_before(now, t, step);
                for (i, (name, _)) in hourly.iter().enumerate() {
                    values[i].push(json!(match name.as_str() {
                        "temperature_2m" => at.temperature,
                        "relative_humidity_2m" => at.humidity.round(),
                        "precipitation" | "rain" => rain,
                        "cloud_cover" => at.cloud_cover,
                        "wind_speed_10m" => at.wind_speed,
                        "wind_gusts_10m" => at.wind_gusts,
                        _ => at.pressure,
                    }));
                }
                t += step.hours();
            }
            let (units, columns) = columnar(unixtime, &hourly, times, values);
            body["hourly_units"] = units;
            body["hourly"] = columns;
        }
        if !daily.is_empty() {
            let mut times = Vec::new();
            let mut values: Vec<Vec<Value>> = vec![Vec::new(); daily.len()];
            let mut day = first_day;
            while day < end_day {
                let from = midnight(day)?.timestamp();
                let next = day.tomorrow().map_err(|e| e.to_string())?;
                let to = midnight(next)?.timestamp();
                times.push(if unixtime {
                    json!(from.as_second())
                } else {
                    json!(day.to_string())
                });
                let mut hours = Vec::new();
                let mut t = from;
                while t < to {
                    hours.push(self.forecast(now, t));
                    t += 1.hour();
                }
                let max = |f: fn(&Hour) -> f64| hours.iter().map(f).fold(f64::MIN, f64::max);
                let min = |f: fn(&Hour) -> f64| hours.iter().map(f).fold(f64::MAX, f64::min);
                let sum = |f: fn(&Hour) -> f64| round1(hours.iter().map(f).sum());
                for (i, (name, _)) in daily.iter().enumerate() {
                    values[i].push(json!(match name.as_str() {
                        "temperature_2m_max" => max(|h| h.temperature),
                        "temperature_2m_min" => min(|h| h.temperature),
                        "precipitation_sum" | "rain_sum" => sum(|h| h.rain),
                        _ => max(|h| h.wind_speed),
                    }));
                }
                day = next;
            }
            let (units, columns) = columnar(unixtime, &daily, times, values);
            body["daily_units"] = units;
            body["daily"] = columns;
        }
        Ok(body)
    }

    /// Answers infoclimat.fr's `GET /public-api/gfs/json?_ll=LAT,LON&_auth=KEY&_c=CHECK` as of
    /// `now`: the next 7 days in 3-hour steps (UTC), each step an object keyed by its time,
    /// temperatures in Kelvin, pressure in Pascal, rain in mm over the step. `Err` is the
    /// refusal (`request_state` 401 or 400) with its message.
    pub fn infoclimat(
        &self,
        params: &HashMap<String, String>,
        now: Timestamp,
    ) -> Result<Value, (u16, String)> {
        if params.get("_auth").is_none_or(|a| a.trim().is_empty()) {
            return Err((401, "Clé d'authentification (_auth) manquante".into()));
        }
        let ll = params.get("_ll").ok_or((
            400,
            "Paramètre _ll (latitude,longitude) manquant".to_string(),
        ))?;
        let valid = ll
            .split_once(',')
            .and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)))
            .is_some();
        if !valid {
            return Err((400, format!("Paramètre _ll invalide : {ll}")));
        }
        // Steps at 02:00, 05:00 .. UTC (the GFS runs' 3-hour grid as infoclimat serves it).
        let hour = hour_index(now);
        let first = hour - (hour - 2).rem_euclid(3) + 3;
        let run = (hour.rem_euclid(24) / 6) * 6;
        let mut body = Map::new();
        body.insert("request_state".into(), json!(200));
        body.insert(
            "request_key".into(),
            json!(format!("{:032x}", hash(&[self.seed, hour as u64]) as u128)),
        );
        body.insert("message".into(), json!("OK"));
        body.insert("model_run".into(), json!(format!("{run:02}")));
        body.insert("source".into(), json!("internal:GFS:1"));
        for k in 0..(7 * 8) {
            let step = first + 3 * k;
            let Ok(t) = Timestamp::from_second(step * 3600) else {
                continue;
            };
            let f = self.forecast(now, t);
            let rain = self.rain_before(now, t, 3);
            let kelvin = |c: f64| ((c + 273.15) * 10.0).round() / 10.0;
            body.insert(
                t.to_zoned(TimeZone::UTC).strftime("%Y-%m-%d %H:%M:%S").to_string(),
                json!({
                    "temperature": { "2m": kelvin(f.temperature), "sol": kelvin(f.temperature - 1.5), "500hPa": -0.1, "850hPa": -0.1 },
                    "pression": { "niveau_de_la_mer": (f.pressure * 100.0).round() },
                    "pluie": rain,
                    "pluie_convective": 0,
                    "humidite": { "2m": f.humidity },
                    "vent_moyen": { "10m": f.wind_speed },
                    "vent_rafales": { "10m": f.wind_gusts },
                    "vent_direction": { "10m": (hash(&[self.seed, 0xd1, step as u64]) % 360) as i64 },
                    "iso_zero": 2000,
                    "risque_neige": if f.temperature < 1.0 && rain > 0.0 { "oui" } else { "non" },
                    "cape": 0,
                    "nebulosite": { "haute": 0, "moyenne": 0, "basse": f.cloud_cover, "totale": f.cloud_cover },
                }),
            );
        }
        Ok(Value::Object(body))
    }
}

/// Open-Meteo's `*_units` and columnar `hourly`/`daily` objects: `time` first, then each
/// variable's values.
fn columnar(
    unixtime: bool,
    variables: &[(String, String)],
    times: Vec<Value>,
    values: Vec<Vec<Value>>,
) -> (Value, Value) {
    let mut units = Map::new();
    units.insert(
        "time".into(),
        json!(if unixtime { "unixtime" } else { "iso8601" }),
    );
    let mut columns = Map::new();
    columns.insert("time".into(), Value::Array(times));
    for ((name, unit), vals) in variables.iter().zip(values) {
        units.insert(name.clone(), json!(unit));
        columns.insert(name.clone(), Value::Array(vals));
    }
    (Value::Object(units), Value::Object(columns))
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::draw::params;

    #[test]
    fn seasons_days_and_forecasts_behave_like_weather() {
        let w = Weather::new(1);
        let mean = |month: &str| {
            let start: Timestamp = format!("2025-{month}-01T00:00:00Z").parse().unwrap();
            (0..24 * 28)
                .map(|h| w.truth(start + (h as i64).hours()).temperature)
                .sum::<f64>()
                / (24.0 * 28.0)
        };
        let (jan, jul) = (mean("01"), mean("07"));
        assert!((1.0..9.0).contains(&jan), "January {jan}");
        assert!((16.0..25.0).contains(&jul), "July {jul}");
        // Afternoons are warmer than nights.
        let day: Timestamp = "2025-05-10T00:00:00Z".parse().unwrap();
        let afternoon: f64 = (0..20)
            .map(|d| w.truth(day + (d * 24 + 15).hours()).temperature)
            .sum();
        let night: f64 = (0..20)
            .map(|d| w.truth(day + (d * 24 + 4).hours()).temperature)
            .sum();
        assert!(afternoon > night + 40.0, "{afternoon} vs {night}");
        // Some hours rain, most do not.
        let wet = (0..24 * 60)
            .filter(|h| w.truth(day + (*h as i64).hours()).rain > 0.0)
            .count();
        assert!((50..600).contains(&wet), "{wet} wet hours of 1440");
        // A forecast is the truth for past hours, and departs from it with the lead time.
        let issued = day + 100.hours();
        assert_eq!(
            w.forecast(issued, day + 99.hours()),
            w.truth(day + 99.hours())
        );
        let err = |lead: i64| -> f64 {
            (0..200)
                .map(|k| {
                    let issued = day + (k * 24).hours();
                    let t = issued + lead.hours();
                    (w.forecast(issued, t).temperature - w.truth(t).temperature).abs()
                })
                .sum::<f64>()
                / 200.0
        };
        assert!(
            err(6 * 24) > 2.0 * err(24),
            "{} vs {}",
            err(6 * 24),
            err(24)
        );
        // Deterministic for a seed, different across seeds.
        assert_eq!(Weather::new(1).truth(day), w.truth(day));
        assert_ne!(
            Weather::new(2).truth(day + 15.hours()),
            w.truth(day + 15.hours())
        );
    }

    #[test]
    fn open_meteo_answers_its_shape_and_refuses_like_it() {
        let w = Weather::new(1);
        let now: Timestamp = "2025-11-24T10:20:00Z".parse().unwrap();
        let body = w
            .open_meteo(
                &params(&[
                    ("latitude", "48.8566"),
                    ("longitude", "2.3522"),
                    ("hourly", "temperature_2m,rain,wind_speed_10m"),
                    ("daily", "temperature_2m_max,rain_sum"),
                    ("timezone", "Europe/Paris"),
                    ("past_days", "1"),
                    ("temporal_resolution", "hourly_3"),
                ]),
                now,
            )
            .unwrap();
        let times = body["hourly"]["time"].as_array().unwrap();
        // 8 days (yesterday, today and 6 more) of 8 steps, from local midnight.
        assert_eq!(times.len(), 64);
        assert_eq!(times[0], "2025-11-23T00:00");
        assert_eq!(times[1], "2025-11-23T03:00");
        assert_eq!(body["hourly"]["rain"].as_array().unwrap().len(), 64);
        assert_eq!(body["hourly_units"]["temperature_2m"], "°C");
        assert_eq!(body["utc_offset_seconds"], 3600);
        assert_eq!(body["daily"]["time"][0], "2025-11-23");
        assert_eq!(body["daily"]["time"].as_array().unwrap().len(), 8);
        // A 3-hour step's rain is that of the 3 hours before it (as the hourly answer gives
        // them: each hour's value is the hour before it), and a day's the sum of its steps
        // ending from 03:00 to the next midnight.
        let hourly = w
            .open_meteo(
                &params(&[
                    ("latitude", "48.8566"),
                    ("longitude", "2.3522"),
                    ("hourly", "rain"),
                    ("timezone", "Europe/Paris"),
                    ("past_days", "1"),
                ]),
                now,
            )
            .unwrap();
        let step = |j: usize| body["hourly"]["rain"][j].as_f64().unwrap();
        let hour = |j: usize| hourly["hourly"]["rain"][j].as_f64().unwrap();
        let mut wet = 0;
        for j in 1..64 {
            let sum = hour(3 * j) + hour(3 * j - 1) + hour(3 * j - 2);
            assert!(
                (step(j) - sum).abs() < 0.151,
                "step {j}: {} vs {sum}",
                step(j)
            );
            wet += usize::from(step(j) > 0.0);
        }
        assert!(wet >= 3, "only {wet} wet steps: choose a wetter week");
        for d in 0..7 {
            let day_rain = body["daily"]["rain_sum"][d].as_f64().unwrap();
            let steps: f64 = (1..=8).map(|k| step(8 * d + k)).sum();
            assert!(
                (day_rain - steps).abs() < 0.41,
                "day {d}: {day_rain} vs {steps}"
            );
        }
        let unix = w
            .open_meteo(
                &params(&[
                    ("latitude", "48.85"),
                    ("longitude", "2.35"),
                    ("hourly", "temperature_2m"),
                    ("timeformat", "unixtime"),
                    ("forecast_days", "1"),
                ]),
                now,
            )
            .unwrap();
        assert_eq!(unix["hourly"]["time"][0], json!(1_763_942_400));
        assert_eq!(unix["hourly"]["time"].as_array().unwrap().len(), 24);
        for (bad, reason) in [
            (
                vec![("longitude", "2.35")],
                "Parameter 'latitude' is required",
            ),
            (
                vec![("latitude", "x"), ("longitude", "2")],
                "Parameter 'latitude' must be a number, got 'x'",
            ),
            (
                vec![
                    ("latitude", "48"),
                    ("longitude", "2"),
                    ("hourly", "temperature_2m,snow_depth_cm"),
                ],
                "Cannot initialize WeatherVariable from invalid String value snow_depth_cm for key hourly",
            ),
            (
                vec![("latitude", "48"), ("longitude", "2"), ("past_days", "93")],
                "Parameter 'past_days' must be an integer between 0 and 92, got '93'",
            ),
        ] {
            assert_eq!(w.open_meteo(&params(&bad), now).unwrap_err(), reason);
        }
    }

    #[test]
    fn infoclimat_answers_three_hour_steps_in_kelvin() {
        let w = Weather::new(1);
        let now: Timestamp = "2024-10-09T13:10:00Z".parse().unwrap();
        let body = w
            .infoclimat(
                &params(&[("_ll", "48.85341,2.3488"), ("_auth", "k"), ("_c", "c")]),
                now,
            )
            .unwrap();
        assert_eq!(body["request_state"], 200);
        let step = &body["2024-10-09 14:00:00"];
        let kelvin = step["temperature"]["2m"].as_f64().unwrap();
        let truth = w.truth("2024-10-09T14:00:00Z".parse().unwrap()).temperature;
        assert!(
            (kelvin - 273.15 - truth).abs() < 3.0,
            "{kelvin} K vs {truth} °C"
        );
        assert!(body.get("2024-10-09 17:00:00").is_some());
        assert_eq!(
            body.as_object()
                .unwrap()
                .values()
                .filter(|v| v.is_object())
                .count(),
            56
        );
        assert_eq!(
            w.infoclimat(&params(&[("_ll", "48,2")]), now)
                .unwrap_err()
                .0,
            401
        );
        assert_eq!(
            w.infoclimat(&params(&[("_ll", "paris"), ("_auth", "k")]), now)
                .unwrap_err()
                .0,
            400
        );
    }
}

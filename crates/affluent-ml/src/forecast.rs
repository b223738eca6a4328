//! Forecasts of one series: a linear trend (least squares) or additive Holt-Winters, the
//! ETS(A,A,A) model, with its smoothing parameters fitted by Nelder-Mead (argmin) on the
//! one-step errors, and prediction intervals from the model's error variance.
//!
//! A series is on a regular grid of steps; a missing value (a closed day) is `None`: the line
//! skips it, and Holt-Winters carries its state across it without an error to learn from, so the
//! season stays aligned with the calendar.

use argmin::core::{CostFunction, Executor, State};
use argmin::solver::neldermead::NelderMead;
use serde::{Deserialize, Serialize};

use crate::fit::{normal_quantile, student_quantile};

/// A fitted forecaster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Forecaster {
    /// `y = intercept + slope × t` (t = 0, 1, ... the observation's position).
    Linear {
        /// At t = 0.
        intercept: f64,
        /// Per step.
        slope: f64,
        /// Residual standard deviation (k − 2 degrees of freedom, k the values present).
        sigma: f64,
        /// Steps of the series (values present or not).
        n: usize,
        /// Values present.
        #[serde(default)]
        observed: usize,
        /// Mean of t.
        t_mean: f64,
        /// Σ (t − t̄)².
        sxx: f64,
    },
    /// Level, trend and season after the last observation, and the smoothing parameters.
    HoltWinters {
        /// Level smoothing.
        alpha: f64,
        /// Trend smoothing.
        beta: f64,
        /// Season smoothing.
        gamma: f64,
        /// The level after the last observation.
        level: f64,
        /// The trend after the last observation.
        trend: f64,
        /// The seasonal terms, `season[i]` for the position `(n + i) mod m` after the end.
        season: Vec<f64>,
        /// Whether each of those positions had a value (a weekday never observed, a closed
        /// day, is not forecast). Empty: all had.
        #[serde(default)]
        observed: Vec<bool>,
        /// One-step error standard deviation.
        sigma: f64,
        /// Observations fitted.
        n: usize,
    },
}

/// One forecast step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The point forecast.
    pub value: f64,
    /// The interval's lower bound.
    pub lower: f64,
    /// The interval's upper bound.
    pub upper: f64,
}

fn present(y: &[Option<f64>]) -> impl Iterator<Item = (usize, f64)> + '_ {
    y.iter().enumerate().filter_map(|(t, v)| v.map(|v| (t, v)))
}

/// Fits a straight line on the values present; needs 3 of them.
pub fn linear(y: &[Option<f64>]) -> Result<Forecaster, String> {
    let count = present(y).count();
    if count < 3 {
        return Err(format!(
            "a linear trend needs at least 3 observations (the series has {count})"
        ));
    }
    let k = count as f64;
    let t_mean = present(y).map(|(t, _)| t as f64).sum::<f64>() / k;
    let y_mean = present(y).map(|(_, v)| v).sum::<f64>() / k;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (t, v) in present(y) {
        let dt = t as f64 - t_mean;
        sxy += dt * (v - y_mean);
        sxx += dt * dt;
    }
    let slope = sxy / sxx;
    let intercept = y_mean - slope * t_mean;
    let sse: f64 = present(y)
        .map(|(t, v)| {
            let e = v - (intercept + slope * t as f64);
            e * e
        })
        .sum();
    Ok(Forecaster::Linear {
        intercept,
        slope,
        sigma: (sse / (k - 2.0)).sqrt(),
        n: y.len(),
        observed: count,
        t_mean,
        sxx,
    })
}

/// The heuristic initial state: the first season's mean as level, the change of mean from the
/// first season to the second per step as trend, the first season's deviations as season.
/// Missing values of the first season take the first season's mean (a deviation of 0).
fn initial(y: &[Option<f64>], m: usize) -> (f64, f64, Vec<f64>) {
    let mean = |s: &[Option<f64>]| {
        let v: Vec<f64> = s.iter().flatten().copied().collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let first = mean(&y[..m]);
    let second = mean(&y[m..2 * m]);
    let season = y[..m]
        .iter()
        .map(|v| v.map_or(0.0, |v| v - first))
        .collect();
    (first, (second - first) / m as f64, season)
}

/// Runs the recursions from the initial state: (sum of squared one-step errors, level, trend,
/// season after the last observation, indexed by position mod m).
fn run(
    y: &[Option<f64>],
    m: usize,
    alpha: f64,
    beta: f64,
    gamma: f64,
) -> (f64, f64, f64, Vec<f64>) {
    let (mut level, mut trend, mut season) = initial(y, m);
    let mut sse = 0.0;
    for (t, v) in y.iter().enumerate() {
        let s = season[t % m];
        // A missing value: the state moves on without an error.
        let e = v.map_or(0.0, |v| v - (level + trend + s));
        sse += e * e;
        level += trend + alpha * e;
        trend += beta * e;
        season[t % m] = s + gamma * e;
    }
    (sse, level, trend, season)
}

fn logistic(u: f64) -> f64 {
    1.0 / (1.0 + (-u).exp())
}

/// (α, β, γ) of unbounded `u`: 0 < α < 1, 0 < β < α, 0 < γ < 1 − α (the usual admissible
/// region).
fn params(u: &[f64]) -> (f64, f64, f64) {
    let alpha = logistic(u[0]);
    (
        alpha,
        alpha * logistic(u[1]),
        (1.0 - alpha) * logistic(u[2]),
    )
}

struct Sse<'a> {
    y: &'a [Option<f64>],
    m: usize,
}

impl CostFunction for Sse<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, u: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let (a, b, g) = params(u);
        Ok(run(self.y, self.m, a, b, g).0)
    }
}

/// Fits additive Holt-Winters with season length `m`; needs two seasons and a step, each
/// season with a value.
pub fn holt_winters(y: &[Option<f64>], m: usize) -> Result<Forecaster, String> {
    let n = y.len();
    if m < 2 || n < 2 * m + 1 {
        return Err(format!(
            "Holt-Winters with a season of {m} needs at least {} observations (the series has {n})",
            2 * m + 1
        ));
    }
    if y[..m].iter().all(Option::is_none) || y[m..2 * m].iter().all(Option::is_none) {
        return Err(format!(
            "Holt-Winters needs values in each of its first two seasons of {m} steps"
        ));
    }
    let start = vec![
        vec![0.0, -1.0, -2.0],
        vec![1.5, -1.0, -2.0],
        vec![0.0, 1.0, -2.0],
        vec![0.0, -1.0, 0.5],
    ];
    let solver = NelderMead::new(start)
        .with_sd_tolerance(1e-10)
        .map_err(|e| e.to_string())?;
    let result = Executor::new(Sse { y, m }, solver)
        .configure(|state| state.max_iters(2000))
        .run()
        .map_err(|e| format!("the solver failed: {e}"))?;
    let u = result
        .state()
        .get_best_param()
        .cloned()
        .ok_or("the solver returned no parameters")?;
    let (alpha, beta, gamma) = params(&u);
    let (sse, level, trend, by_position) = run(y, m, alpha, beta, gamma);
    let season = (0..m).map(|i| by_position[(n + i) % m]).collect();
    let seen: Vec<bool> = (0..m)
        .map(|i| y.iter().skip((n + i) % m).step_by(m).any(Option::is_some))
        .collect();
    let observed = y.iter().flatten().count();
    Ok(Forecaster::HoltWinters {
        alpha,
        beta,
        gamma,
        level,
        trend,
        season,
        observed: seen,
        sigma: (sse / observed.max(1) as f64).sqrt(),
        n,
    })
}

impl Forecaster {
    /// The next `horizon` steps with intervals of `coverage` (0.95); None for a step whose
    /// season position was never observed (a closed day).
    pub fn forecast(&self, horizon: usize, coverage: f64) -> Vec<Option<Step>> {
        let z = normal_quantile(0.5 + coverage / 2.0);
        match self {
            Forecaster::Linear {
                intercept,
                slope,
                sigma,
                n,
                observed,
                t_mean,
                sxx,
            } => (1..=horizon)
                .map(|h| {
                    // The prediction interval of least squares: Student's t with k − 2 degrees
                    // of freedom.
                    let k = (*observed).max(3);
                    let z = student_quantile(0.5 + coverage / 2.0, (k - 2) as f64);
                    let t = (*n + h - 1) as f64;
                    let value = intercept + slope * t;
                    let se = sigma * (1.0 + 1.0 / k as f64 + (t - t_mean).powi(2) / sxx).sqrt();
                    Some(Step {
                        value,
                        lower: value - z * se,
                        upper: value + z * se,
                    })
                })
                .collect(),
            Forecaster::HoltWinters {
                alpha,
                beta,
                gamma,
                level,
                trend,
                season,
                observed,
                sigma,
                ..
            } => {
                let m = season.len();
                let mut spread = 0.0;
                (1..=horizon)
                    .map(|h| {
                        // Var of an h-step error: σ² (1 + Σ_{j<h} c_j²), c_j = α + jβ + γ[j ≡ 0 mod m].
                        if h > 1 {
                            let j = h - 1;
                            let c = alpha + j as f64 * beta + if j % m == 0 { *gamma } else { 0.0 };
                            spread += c * c;
                        }
                        let at = (h - 1) % m;
                        if observed.get(at) == Some(&false) {
                            return None;
                        }
                        let value = level + h as f64 * trend + season[at];
                        let se = sigma * (1.0 + spread).sqrt();
                        Some(Step {
                            value,
                            lower: value - z * se,
                            upper: value + z * se,
                        })
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_forecast_on_the_line() {
        let y: Vec<Option<f64>> = (0..10).map(|t| Some(3.0 + 2.0 * t as f64)).collect();
        let f = linear(&y).unwrap();
        let steps: Vec<Step> = f.forecast(2, 0.95).into_iter().flatten().collect();
        assert!((steps[0].value - 23.0).abs() < 1e-9);
        assert!((steps[1].value - 25.0).abs() < 1e-9);
    }

    #[test]
    fn a_clean_weekly_cycle_is_forecast_closely() {
        let week = [10.0, 12.0, 14.0, 13.0, 11.0, 4.0, 2.0];
        // Sundays (position 6) missing: the cycle stays aligned.
        let y: Vec<Option<f64>> = (0..70)
            .map(|t| (t % 7 != 6).then(|| week[t % 7] + 0.1 * t as f64))
            .collect();
        let f = holt_winters(&y, 7).unwrap();
        let steps = f.forecast(7, 0.95);
        for (h, s) in steps.iter().enumerate() {
            let t = 70 + h;
            if t % 7 == 6 {
                assert!(s.is_none(), "a Sunday is never observed: not forecast");
                continue;
            }
            let s = s.unwrap();
            let want = week[t % 7] + 0.1 * t as f64;
            assert!(
                (s.value - want).abs() < 0.5,
                "step {h}: {} vs {want}",
                s.value
            );
            assert!(s.lower <= s.value && s.value <= s.upper);
        }
        // Intervals widen with the horizon.
        let (first, last) = (steps[0].unwrap(), steps[5].unwrap());
        assert!(last.upper - last.lower >= first.upper - first.lower);
    }

    #[test]
    fn too_short_a_series_says_how_long_it_must_be() {
        let err = holt_winters(&[Some(1.0); 10], 7).unwrap_err();
        assert!(err.contains("at least 15 observations"), "{err}");
    }
}

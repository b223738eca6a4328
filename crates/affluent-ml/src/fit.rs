//! The numerics, pure and deterministic: standard scaling, L2-regularized logistic regression
//! with row weights (L-BFGS from argmin), k nearest neighbours, classification and forecast
//! metrics, and a seeded shuffle.

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason, TerminationStatus};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use serde::{Deserialize, Serialize};

use affluent_config::schema::Metric;

/// Mean and standard deviation of each feature (population deviation, as scikit-learn's
/// `StandardScaler`); a constant feature keeps a scale of 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaler {
    /// Per feature.
    pub mean: Vec<f64>,
    /// Per feature.
    pub scale: Vec<f64>,
}

impl Scaler {
    /// The scaler of rows `x` (each of the same length).
    pub fn fit(x: &[Vec<f64>]) -> Self {
        let d = x.first().map_or(0, Vec::len);
        let n = x.len().max(1) as f64;
        let mut mean = vec![0.0; d];
        for row in x {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v / n;
            }
        }
        let mut var = vec![0.0; d];
        for row in x {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v - m) * (v - m) / n;
            }
        }
        let scale = var
            .into_iter()
            .map(|v| if v > 0.0 { v.sqrt() } else { 1.0 })
            .collect();
        Self { mean, scale }
    }

    /// The identity (no scaling) for `d` features.
    pub fn identity(d: usize) -> Self {
        Self {
            mean: vec![0.0; d],
            scale: vec![1.0; d],
        }
    }

    /// A row, scaled.
    pub fn apply(&self, row: &[f64]) -> Vec<f64> {
        row.iter()
            .zip(&self.mean)
            .zip(&self.scale)
            .map(|((v, m), s)| (v - m) / s)
            .collect()
    }
}

/// A fitted logistic regression: `P(true) = σ(x · coef + intercept)` on scaled features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    /// Per feature.
    pub coef: Vec<f64>,
    /// The intercept (not regularized).
    pub intercept: f64,
    /// Solver iterations.
    pub iterations: u64,
    /// Whether the solver stopped on its tolerance (rather than `max_iter`).
    pub converged: bool,
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(-m))` without overflow.
fn log1p_exp_neg(m: f64) -> f64 {
    (-m).max(0.0) + (-m.abs()).exp().ln_1p()
}

impl Logistic {
    /// The probability of `true` for a scaled row.
    pub fn probability(&self, row: &[f64]) -> f64 {
        sigmoid(self.intercept + row.iter().zip(&self.coef).map(|(x, w)| x * w).sum::<f64>())
    }
}

/// scikit-learn's binary objective, divided by the weights' sum (the same minimum):
/// `Σ sᵢ log(1 + exp(−yᵢ zᵢ)) + ‖w‖² / (2C)`, with `zᵢ = xᵢ·w + b` and `yᵢ = ±1`.
struct Objective<'a> {
    x: &'a [Vec<f64>],
    y: &'a [bool],
    weights: &'a [f64],
    c: f64,
    total: f64,
}

impl Objective<'_> {
    fn z(&self, p: &[f64], row: &[f64]) -> f64 {
        let (b, w) = p.split_last().expect("an intercept");
        b + row.iter().zip(w).map(|(x, w)| x * w).sum::<f64>()
    }
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        let mut loss = 0.0;
        for ((row, &y), s) in self.x.iter().zip(self.y).zip(self.weights) {
            let z = self.z(p, row);
            let m = if y { z } else { -z };
            loss += s * log1p_exp_neg(m);
        }
        let (_, w) = p.split_last().expect("an intercept");
        let l2: f64 = w.iter().map(|w| w * w).sum();
        Ok((loss + l2 / (2.0 * self.c)) / self.total)
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        let d = p.len() - 1;
        let mut g = vec![0.0; d + 1];
        for ((row, &y), s) in self.x.iter().zip(self.y).zip(self.weights) {
            let r = s * (sigmoid(self.z(p, row)) - if y { 1.0 } else { 0.0 });
            for (gj, xj) in g.iter_mut().zip(row) {
                *gj += r * xj;
            }
            g[d] += r;
        }
        for (gj, wj) in g.iter_mut().zip(&p[..d]) {
            *gj += wj / self.c;
        }
        Ok(g.into_iter().map(|v| v / self.total).collect())
    }
}

/// Fits a logistic regression on scaled rows `x` with labels `y` and row weights, by L-BFGS
/// (history 10, Moré-Thuente line search) from zero, to a gradient norm of 1e-10 or `max_iter`
/// iterations.
pub fn logistic(
    x: &[Vec<f64>],
    y: &[bool],
    weights: &[f64],
    c: f64,
    max_iter: u64,
) -> Result<Logistic, String> {
    let d = x.first().map_or(0, Vec::len);
    let total: f64 = weights.iter().sum();
    if x.is_empty() || total <= 0.0 {
        return Err("no labelled row to learn from".to_string());
    }
    let problem = Objective {
        x,
        y,
        weights,
        c,
        total,
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-10)
        .and_then(|s| s.with_tolerance_cost(1e-15))
        .map_err(|e| e.to_string())?;
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(vec![0.0; d + 1]).max_iters(max_iter))
        .run()
        .map_err(|e| format!("the solver failed: {e}"))?;
    let state = result.state();
    let best = state
        .get_best_param()
        .cloned()
        .ok_or("the solver returned no parameters")?;
    let (intercept, coef) = best.split_last().expect("an intercept");
    Ok(Logistic {
        coef: coef.to_vec(),
        intercept: *intercept,
        iterations: state.get_iter(),
        converged: !matches!(
            state.get_termination_status(),
            TerminationStatus::Terminated(TerminationReason::MaxItersReached)
        ),
    })
}

/// scikit-learn's `class_weight="balanced"`: `n / (2 × rows of the class)` for each row.
pub fn balanced_weights(y: &[bool]) -> Vec<f64> {
    let n = y.len() as f64;
    let positives = y.iter().filter(|&&v| v).count() as f64;
    let negatives = n - positives;
    y.iter()
        .map(|&v| {
            let count = if v { positives } else { negatives };
            if count > 0.0 { n / (2.0 * count) } else { 0.0 }
        })
        .collect()
}

/// For each row, its `k` nearest other rows (index, distance), nearest first; equal distances
/// in row order. Exact (every pair is compared), in O(n² d) time and O(n k) memory: each row
/// keeps only its k best so far; euclidean distances are compared squared.
pub fn neighbours(x: &[Vec<f64>], k: usize, metric: Metric) -> Vec<Vec<(usize, f64)>> {
    let k = k.min(x.len().saturating_sub(1));
    let norms: Vec<f64> = match metric {
        Metric::Cosine => x
            .iter()
            .map(|r| r.iter().map(|v| v * v).sum::<f64>().sqrt())
            .collect(),
        _ => Vec::new(),
    };
    let raw = |i: usize, j: usize| -> f64 {
        let (a, b) = (&x[i], &x[j]);
        match metric {
            Metric::Euclidean => a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum(),
            Metric::Manhattan => a.iter().zip(b).map(|(p, q)| (p - q).abs()).sum(),
            Metric::Cosine => {
                let dot: f64 = a.iter().zip(b).map(|(p, q)| p * q).sum();
                if norms[i] == 0.0 || norms[j] == 0.0 {
                    1.0
                } else {
                    1.0 - dot / (norms[i] * norms[j])
                }
            }
        }
    };
    (0..x.len())
        .map(|i| {
            let mut best: Vec<(usize, f64)> = Vec::with_capacity(k + 1);
            if k == 0 {
                return best;
            }
            for j in 0..x.len() {
                if j == i {
                    continue;
                }
                let d = raw(i, j);
                // Rows come in order: a later row at an equal distance stays behind.
                if best.len() < k || d < best[k - 1].1 {
                    let at = best.partition_point(|p| p.1 <= d);
                    best.insert(at, (j, d));
                    best.truncate(k);
                }
            }
            if metric == Metric::Euclidean {
                for p in &mut best {
                    p.1 = p.1.sqrt();
                }
            }
            best
        })
        .collect()
}

/// Classification metrics of probabilities against labels, at a threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// Rows measured.
    pub rows: usize,
    /// Share of rows predicted right.
    pub accuracy: f64,
    /// Of rows predicted true, the share that are (None: none predicted true).
    pub precision: Option<f64>,
    /// Of true rows, the share predicted true (None: no true row).
    pub recall: Option<f64>,
    /// Area under the ROC curve (None: one class only).
    pub roc_auc: Option<f64>,
}

/// Accuracy, precision, recall and ROC AUC (ties of probability count half, as
/// scikit-learn's `roc_auc_score`).
pub fn classification(p: &[f64], y: &[bool], threshold: f64) -> Classification {
    let n = y.len();
    let (mut tp, mut fp, mut tn, mut fneg) = (0usize, 0usize, 0usize, 0usize);
    for (&pi, &yi) in p.iter().zip(y) {
        match (pi >= threshold, yi) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fneg += 1,
        }
    }
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);
    Classification {
        rows: n,
        accuracy: ratio(tp + tn, n).unwrap_or(0.0),
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fneg),
        roc_auc: roc_auc(p, y),
    }
}

/// The Mann-Whitney form of ROC AUC, with average ranks for ties.
pub fn roc_auc(p: &[f64], y: &[bool]) -> Option<f64> {
    let positives = y.iter().filter(|&&v| v).count();
    let negatives = y.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..p.len()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && p[order[j + 1]] == p[order[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1, averaged.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if y[k] {
                rank_sum += rank;
            }
        }
        i = j + 1;
    }
    let pos = positives as f64;
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * negatives as f64))
}

/// Mean absolute error and mean absolute percentage error (over non-zero actuals; None when
/// every actual is zero).
pub fn errors(actual: &[f64], forecast: &[f64]) -> (f64, Option<f64>) {
    let n = actual.len().max(1) as f64;
    let mae = actual
        .iter()
        .zip(forecast)
        .map(|(a, f)| (a - f).abs())
        .sum::<f64>()
        / n;
    let pct: Vec<f64> = actual
        .iter()
        .zip(forecast)
        .filter(|(a, _)| **a != 0.0)
        .map(|(a, f)| ((a - f) / a).abs())
        .collect();
    let mape = (!pct.is_empty()).then(|| pct.iter().sum::<f64>() / pct.len() as f64);
    (mae, mape)
}

/// A permutation of `0..n`, the same for the same seed on every platform and version
/// (Fisher-Yates over SplitMix64).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = Uniform(seed);
    let mut out: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        out.swap(i, rng.below(i + 1));
    }
    out
}

/// The standard normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Student's t quantile with `df` degrees of freedom: exact for 1 and 2, else the
/// Cornish-Fisher expansion around the normal quantile (within 0.2 % from 3 degrees up).
pub fn student_quantile(p: f64, df: f64) -> f64 {
    if df <= 1.0 {
        return (std::f64::consts::PI * (p - 0.5)).tan();
    }
    if df <= 2.0 {
        return (2.0 * p - 1.0) / (2.0 * p * (1.0 - p)).sqrt();
    }
    let z = normal_quantile(p);
    let (z2, n) = (z * z, df);
    let g1 = (z2 + 1.0) * z / 4.0;
    let g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0;
    let g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0;
    let g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0;
    z + g1 / n + g2 / (n * n) + g3 / (n * n * n) + g4 / (n * n * n * n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn student_quantiles() {
        // scipy.stats.t.ppf(0.975, df)
        for (df, want) in [
            (1.0, 12.706_204_736),
            (2.0, 4.302_652_730),
            (3.0, 3.182_446_305),
            (5.0, 2.570_581_836),
            (30.0, 2.042_272_456),
        ] {
            let got = student_quantile(0.975, df);
            assert!((got - want).abs() / want < 2e-3, "df {df}: {got} vs {want}");
        }
    }

    #[test]
    fn roc_auc_counts_ties_half() {
        assert_eq!(
            roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, true]), None);
    }

    #[test]
    fn normal_quantiles() {
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-8);
    }

    #[test]
    fn a_separable_problem_is_learnt_and_regularization_shrinks_it() {
        let x: Vec<Vec<f64>> = (0..40).map(|i| vec![i as f64 / 10.0 - 2.0]).collect();
        let y: Vec<bool> = (0..40).map(|i| i >= 20).collect();
        let w = vec![1.0; 40];
        let strong = logistic(&x, &y, &w, 0.01, 1000).unwrap();
        let weak = logistic(&x, &y, &w, 10.0, 1000).unwrap();
        assert!(strong.converged && weak.converged);
        assert!(weak.coef[0] > strong.coef[0] && strong.coef[0] > 0.0);
        assert!(weak.probability(&[1.5]) > 0.9 && weak.probability(&[-1.5]) < 0.1);
    }

    #[test]
    fn the_shuffle_is_a_fixed_permutation() {
        let a = shuffled(10, 42);
        assert_eq!(a, shuffled(10, 42));
        assert_ne!(a, shuffled(10, 43));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn neighbours_are_the_nearest_others() {
        let x = vec![vec![0.0], vec![1.0], vec![3.0], vec![3.5]];
        let n = neighbours(&x, 2, Metric::Euclidean);
        assert_eq!(n[0], vec![(1, 1.0), (2, 3.0)]);
        assert_eq!(n[3], vec![(2, 0.5), (1, 2.5)]);
    }
}

/// A node of an isolation tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Node {
    /// A split: rows with `feature < split` go left.
    Split {
        /// The feature.
        feature: usize,
        /// The threshold.
        split: f64,
        /// The index of the left child.
        left: usize,
        /// The index of the right child.
        right: usize,
    },
    /// A leaf holding `size` training rows.
    Leaf {
        /// Rows that reached it.
        size: usize,
    },
}

/// An isolation forest (Liu, Ting and Zhou, 2008): trees of random splits on random subsamples;
/// a row isolated in few splits is anomalous.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    /// Each tree's nodes, the root first.
    pub trees: Vec<Vec<Node>>,
    /// The subsample size of each tree.
    pub sample: usize,
}

/// The average path length of an unsuccessful search in a binary search tree of `n` rows.
fn average_path(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

/// A generator of uniform numbers, deterministic for a seed (SplitMix64).
struct Uniform(u64);

impl Uniform {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// In [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

impl IsolationForest {
    /// Grows `trees` trees on subsamples of `sample` rows (at most the rows there are), each to
    /// the height limit ⌈log₂ sample⌉.
    pub fn fit(x: &[Vec<f64>], trees: usize, sample: usize, seed: u64) -> Self {
        let mut rng = Uniform(seed);
        let sample = sample.min(x.len()).max(1);
        let limit = (sample as f64).log2().ceil() as usize;
        let d = x.first().map_or(0, Vec::len);
        let mut out = Vec::with_capacity(trees);
        for _ in 0..trees {
            // A subsample without replacement: a partial Fisher-Yates.
            let mut idx: Vec<usize> = (0..x.len()).collect();
            for i in 0..sample {
                let j = i + rng.below(x.len() - i);
                idx.swap(i, j);
            }
            idx.truncate(sample);
            let mut nodes = Vec::new();
            grow(x, idx, 0, limit, d, &mut rng, &mut nodes);
            out.push(nodes);
        }
        Self { trees: out, sample }
    }

    /// The anomaly score in (0, 1): 2^(−mean path length / c(sample)). Above 0.5 is anomalous
    /// (scikit-learn's `contamination="auto"`), near 1 certainly so.
    pub fn score(&self, row: &[f64]) -> f64 {
        if self.trees.is_empty() {
            return 0.5;
        }
        let total: f64 = self.trees.iter().map(|t| path(t, row)).sum();
        let mean = total / self.trees.len() as f64;
        let c = average_path(self.sample);
        if c == 0.0 { 0.5 } else { 2f64.powf(-mean / c) }
    }
}

fn grow(
    x: &[Vec<f64>],
    rows: Vec<usize>,
    depth: usize,
    limit: usize,
    d: usize,
    rng: &mut Uniform,
    nodes: &mut Vec<Node>,
) -> usize {
    let at = nodes.len();
    nodes.push(Node::Leaf { size: rows.len() });
    if rows.len() <= 1 || depth >= limit || d == 0 {
        return at;
    }
    // A feature that is not constant on these rows, chosen at random among them.
    let spans: Vec<(usize, f64, f64)> = (0..d)
        .filter_map(|f| {
            let (lo, hi) = rows
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &r| {
                    (lo.min(x[r][f]), hi.max(x[r][f]))
                });
            (hi > lo).then_some((f, lo, hi))
        })
        .collect();
    if spans.is_empty() {
        return at;
    }
    let (feature, lo, hi) = spans[rng.below(spans.len())];
    let split = lo + rng.unit() * (hi - lo);
    let (l, r): (Vec<usize>, Vec<usize>) = rows.into_iter().partition(|&i| x[i][feature] < split);
    let left = grow(x, l, depth + 1, limit, d, rng, nodes);
    let right = grow(x, r, depth + 1, limit, d, rng, nodes);
    nodes[at] = Node::Split {
        feature,
        split,
        left,
        right,
    };
    at
}

fn path(nodes: &[Node], row: &[f64]) -> f64 {
    let mut at = 0;
    let mut depth = 0.0;
    loop {
        match &nodes[at] {
            Node::Leaf { size } => return depth + average_path(*size),
            Node::Split {
                feature,
                split,
                left,
                right,
            } => {
                at = if row[*feature] < *split {
                    *left
                } else {
                    *right
                };
                depth += 1.0;
            }
        }
    }
}

//! Deterministic draws: every simulated number is a pure function of the seed and of what it
//! describes (a point, an hour), never of the order of requests.

/// SplitMix64's finalizer: a well-mixed 64-bit value.
pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One draw for a tuple of parts.
pub(crate) fn hash(parts: &[u64]) -> u64 {
    parts.iter().fold(0x5eed, |h, p| splitmix(h ^ splitmix(*p)))
}

/// FNV-1a of a name, as a part of [`hash`].
pub(crate) fn name_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A uniform draw in (0, 1).
pub(crate) fn uniform(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// A standard normal draw (Box-Muller).
pub(crate) fn normal(h: u64) -> f64 {
    let (u1, u2) = (uniform(h), uniform(splitmix(h)));
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Query parameters from pairs, for tests.
#[cfg(test)]
pub(crate) fn params(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

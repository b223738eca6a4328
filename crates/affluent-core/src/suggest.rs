//! "Did you mean ...?": the closest known name to a misspelt one.

/// The candidate closest to `word`, if it is plausibly a typo of it: one or two edits away
/// (transpositions count as one), or similar by Jaro-Winkler.
pub fn closest<'a, S: AsRef<str>>(word: &str, candidates: &'a [S]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| {
            let c = c.as_ref();
            let edits = strsim::damerau_levenshtein(word, c);
            let score = strsim::jaro_winkler(word, c);
            let plausible = score >= 0.75 || (edits <= 2 && edits < c.chars().count());
            (plausible, score - edits as f64, c)
        })
        .filter(|(plausible, _, _)| *plausible)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(_, _, c)| c)
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_typos_only() {
        let keys = ["base_url", "headers", "auth"];
        assert_eq!(closest("bse_url", &keys), Some("base_url"));
        assert_eq!(closest("rwa", &["raw", "agencies"]), Some("raw"));
        assert_eq!(closest("zzzzzz", &keys), None);
    }
}

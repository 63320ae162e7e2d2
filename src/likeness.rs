//! How alike two token sequences are: the one ratio behind every copy check (a round's answers,
//! compared as `eval::reading::fingerprint`s, and agent files, compared as
//! `agent::code::copy::normalised_tokens`). Each caller owns its tokenizer; the comparison is
//! shared so that "a copy" means one thing.

use std::time::Duration;

/// Longest a comparison may take before `similar` settles for an approximate answer.
const DIFF_DEADLINE: Duration = Duration::from_secs(2);

/// 2·matching tokens / all tokens, in [0, 1]: 1 for equal sequences, 0 when either is empty.
pub fn similarity(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    if a == b {
        return 1.0;
    }
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let diff = similar::TextDiff::configure()
        .timeout(DIFF_DEADLINE)
        .diff_slices(&a, &b);
    f64::from(diff.ratio())
}

#[cfg(test)]
mod tests {
    use super::similarity;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn equal_is_one_empty_is_zero_and_half_shared_is_half() {
        assert_eq!(similarity(&toks("a b c"), &toks("a b c")), 1.0);
        assert_eq!(similarity(&toks(""), &toks("a")), 0.0);
        assert_eq!(similarity(&toks("a b c d"), &toks("a b x y")), 0.5);
    }
}

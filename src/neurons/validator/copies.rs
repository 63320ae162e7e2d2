//! Copies among a round's answers. Patches are compared as `eval::reading::fingerprint`s
//! (whitespace, comments and docstrings gone, names the patch brings in renamed), two being
//! copies at a similarity of at least [`COPY_SIMILARITY`]. Of a set of copies the answer that
//! came back first (lowest latency; the lower position on a tie) keeps its score; every later
//! one is a copy of it.

use crate::eval::reading::fingerprint;
use crate::likeness::similarity;

/// Fingerprint similarity at which two patches are one.
pub const COPY_SIMILARITY: f64 = 0.98;

/// A later answer and the earlier one it copies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Copied {
    pub original: usize,
    pub similarity: f64,
}

/// For each answer (its patch, when one came back, and its latency), the earlier answer it
/// copies, if any.
pub fn find(answers: &[(Option<&str>, f64)]) -> Vec<Option<Copied>> {
    let prints: Vec<Option<Vec<String>>> = answers
        .iter()
        .map(|(p, _)| p.map(fingerprint).filter(|f| !f.is_empty()))
        .collect();
    let mut order: Vec<usize> = (0..answers.len()).collect();
    order.sort_by(|&a, &b| answers[a].1.total_cmp(&answers[b].1).then(a.cmp(&b)));
    let mut out = vec![None; answers.len()];
    for (k, &i) in order.iter().enumerate() {
        let Some(fi) = &prints[i] else { continue };
        for &j in &order[..k] {
            // Only an answer that is not itself a copy can be the original.
            if out[j].is_some() {
                continue;
            }
            let Some(fj) = &prints[j] else { continue };
            let s = similarity(fi, fj);
            if s >= COPY_SIMILARITY {
                out[i] = Some(Copied {
                    original: j,
                    similarity: s,
                });
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix(name: &str) -> String {
        format!(
            "--- a/m.py\n+++ b/m.py\n@@ -1,2 +1,3 @@\n def f(a, b):\n-    return a - b\n+    {name} = a + b\n+    return {name}\n"
        )
    }

    #[test]
    fn the_first_answer_keeps_and_later_copies_point_at_it() {
        let (a, b, c) = (
            fix("total"),
            fix("result"),
            fix("x").replace("a + b", "b * a"),
        );
        let found = find(&[
            (Some(&b), 5.0),
            (Some(&a), 2.0),
            (None, 1.0),
            (Some(&c), 3.0),
            (Some(""), 0.5),
        ]);
        assert_eq!(found[1], None, "the earliest keeps its score");
        assert_eq!(found[0].map(|c| c.original), Some(1));
        assert_eq!((found[2], found[3], found[4]), (None, None, None));
    }
}

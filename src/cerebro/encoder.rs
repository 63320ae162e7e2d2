//! The fitted transformation from raw features ([`super::features::RawFeatures`]) to the
//! model's sparse vector: `[dense (standardised) | repository one-hot (+ other) | hashed
//! tokens]`, the tokens weighted by sublinear TF-IDF and L2-normalised per namespace.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::features::{HASH_BUCKETS, NAMESPACES, RawFeatures, View};

/// The fitted transformation from raw features to the model's sparse vector:
/// `[dense (standardised) | repository one-hot (+ other) | hashed tokens]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoder {
    pub view: View,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    /// Repositories seen in training; any other is `other`.
    pub repos: Vec<String>,
    /// Inverse document frequency per (namespace, bucket), in namespace-major order; empty
    /// when the hashed tokens are left out.
    pub idf: Vec<f32>,
}

/// A sparse vector: (index, value), indices ascending.
pub type Sparse = Vec<(u32, f64)>;

impl Encoder {
    /// Fits the encoder on the training tasks' raw features, with or without the hashed
    /// tokens.
    pub fn fit(view: View, rows: &[RawFeatures], tokens: bool) -> Encoder {
        let n = rows.len().max(1) as f64;
        let dims = rows.first().map_or(0, |r| r.dense.len());
        let mut mean = vec![0.0; dims];
        let mut std = vec![0.0; dims];
        for r in rows {
            for (m, v) in mean.iter_mut().zip(&r.dense) {
                *m += v / n;
            }
        }
        for r in rows {
            for ((s, v), m) in std.iter_mut().zip(&r.dense).zip(&mean) {
                *s += (v - m).powi(2) / n;
            }
        }
        let std = std
            .into_iter()
            .map(|v| if v > 1e-12 { v.sqrt() } else { 1.0 })
            .collect();
        let repos: BTreeSet<String> = rows.iter().map(|r| r.repo.clone()).collect();
        let mut df = vec![0u32; NAMESPACES.len() * HASH_BUCKETS];
        for r in rows {
            for (ns, b) in r.tokens.keys() {
                df[ns * HASH_BUCKETS + *b as usize] += 1;
            }
        }
        let idf = if tokens {
            df.into_iter()
                .map(|d| ((1.0 + n) / (1.0 + f64::from(d))).ln() as f32 + 1.0)
                .collect()
        } else {
            Vec::new()
        };
        Encoder {
            view,
            mean,
            std,
            repos: repos.into_iter().collect(),
            idf,
        }
    }

    /// Length of an encoded vector.
    pub fn dims(&self) -> usize {
        self.mean.len() + self.repos.len() + 1 + self.idf.len()
    }

    /// The model's vector for `raw`.
    pub fn encode(&self, raw: &RawFeatures) -> Sparse {
        let mut out: Sparse = Vec::new();
        for (i, ((v, m), s)) in raw.dense.iter().zip(&self.mean).zip(&self.std).enumerate() {
            let z = ((v - m) / s).clamp(-6.0, 6.0);
            if z != 0.0 {
                out.push((i as u32, z));
            }
        }
        let base = self.mean.len();
        let repo = self
            .repos
            .iter()
            .position(|r| *r == raw.repo)
            .unwrap_or(self.repos.len());
        out.push(((base + repo) as u32, 1.0));
        let base = base + self.repos.len() + 1;
        if self.idf.is_empty() {
            return out;
        }
        for ns in 0..NAMESPACES.len() {
            let start = out.len();
            for (&(n, b), &count) in raw.tokens.range((ns, 0)..(ns + 1, 0)) {
                debug_assert_eq!(n, ns);
                let k = ns * HASH_BUCKETS + b as usize;
                let w = (1.0 + count.ln()) * f64::from(self.idf[k]);
                out.push(((base + k) as u32, w));
            }
            let norm = out[start..].iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
            if norm > 0.0 {
                for (_, w) in &mut out[start..] {
                    *w /= norm;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cerebro::facts::TaskFacts;
    use crate::cerebro::features::{DENSE, bucket, fnv1a, raw};

    const PATCH: &str = "diff --git a/pkg/core.py b/pkg/core.py\n--- a/pkg/core.py\n+++ b/pkg/core.py\n@@ -10,3 +10,4 @@ def parse_header(value):\n-    if value > limit:\n+    if value >= limit:\n+        return None\n     return value\n";

    fn facts(statement: &str, patch: &str) -> TaskFacts {
        TaskFacts {
            instance_id: "t".into(),
            repo: "o/r".into(),
            problem_statement: statement.into(),
            patch: patch.into(),
            ..TaskFacts::default()
        }
    }

    #[test]
    fn encoding_standardises_one_hots_and_normalises_each_namespace() {
        let rows: Vec<RawFeatures> = [("a b c", "o/r"), ("a d", "o/s"), ("b b b e", "o/r")]
            .iter()
            .map(|(s, r)| {
                let mut f = facts(s, PATCH);
                f.repo = (*r).into();
                raw(&f, View::Fix)
            })
            .collect();
        let enc = Encoder::fit(View::Fix, &rows, true);
        assert_eq!(
            Encoder::fit(View::Fix, &rows, false).dims(),
            DENSE.len() + 3
        );
        assert_eq!(enc.repos, ["o/r", "o/s"]);
        let mut unseen = facts("zz", PATCH);
        unseen.repo = "pypi/x".into();
        let v = enc.encode(&raw(&unseen, View::Fix));
        let other = (DENSE.len() + 2) as u32;
        assert!(v.contains(&(other, 1.0)));
        assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(v.iter().all(|(i, _)| (*i as usize) < enc.dims()));
        let text_start = (DENSE.len() + 3) as u32;
        let norm: f64 = v
            .iter()
            .filter(|(i, _)| (text_start..text_start + HASH_BUCKETS as u32).contains(i))
            .map(|(_, w)| w * w)
            .sum();
        assert!((norm - 1.0).abs() < 1e-9, "{norm}");
        // Stable hashing: the same token lands in the same bucket on every build.
        assert_eq!(bucket(0, "traceback"), bucket(0, "traceback"));
        assert_eq!(fnv1a(0, b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}

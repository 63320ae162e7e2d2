//! Scoring probabilistic forecasts of binary outcomes: AUROC (ties counted half), the Brier
//! score, log loss and calibration bins; and Spearman's rank correlation for the effort head.

use serde::{Deserialize, Serialize};

/// Area under the ROC curve of scores `p` for labels `y`: the chance that a random positive
/// scores above a random negative, ties counting half. `None` without both classes.
pub fn auroc(p: &[f64], y: &[bool]) -> Option<f64> {
    let ranks = ranks(p);
    let pos = y.iter().filter(|v| **v).count();
    let neg = y.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let sum: f64 = ranks
        .iter()
        .zip(y)
        .filter(|(_, v)| **v)
        .map(|(r, _)| r)
        .sum();
    let u = sum - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos as f64 * neg as f64))
}

/// 1-based ranks, ties sharing their mean rank.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Mean squared error of probabilities against outcomes (0 is perfect, 0.25 is a coin).
pub fn brier(p: &[f64], y: &[bool]) -> f64 {
    let n = p.len().max(1) as f64;
    p.iter()
        .zip(y)
        .map(|(p, y)| (p - f64::from(u8::from(*y))).powi(2))
        .sum::<f64>()
        / n
}

/// Mean negative log-likelihood, probabilities clipped to [1e-6, 1 − 1e-6].
pub fn log_loss(p: &[f64], y: &[bool]) -> f64 {
    let n = p.len().max(1) as f64;
    p.iter()
        .zip(y)
        .map(|(p, y)| {
            let p = p.clamp(1e-6, 1.0 - 1e-6);
            if *y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum::<f64>()
        / n
}

/// Spearman's rank correlation.
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len().max(1) as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 {
        return 0.0;
    }
    cov / (va * vb).sqrt()
}

/// One calibration bin: forecasts in `[lo, hi)`, their mean and the observed rate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    pub mean_forecast: f64,
    pub observed: f64,
}

/// `bins` equal-width calibration bins over [0, 1] (empty bins left out).
pub fn calibration(p: &[f64], y: &[bool], bins: usize) -> Vec<Bin> {
    let mut acc = vec![(0usize, 0.0f64, 0.0f64); bins];
    for (p, y) in p.iter().zip(y) {
        let b = ((p * bins as f64) as usize).min(bins - 1);
        acc[b].0 += 1;
        acc[b].1 += p;
        acc[b].2 += f64::from(u8::from(*y));
    }
    acc.into_iter()
        .enumerate()
        .filter(|(_, (n, _, _))| *n > 0)
        .map(|(i, (n, sp, sy))| Bin {
            lo: i as f64 / bins as f64,
            hi: (i + 1) as f64 / bins as f64,
            count: n,
            mean_forecast: sp / n as f64,
            observed: sy / n as f64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_counts_pairs_and_ties() {
        let y = [false, false, true, true];
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &y), Some(1.0));
        assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &y), Some(0.0));
        assert_eq!(auroc(&[0.5; 4], &y), Some(0.5));
        // One of four pairs misordered.
        assert_eq!(auroc(&[0.1, 0.6, 0.5, 0.9], &y), Some(0.75));
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn brier_log_loss_and_bins() {
        assert_eq!(brier(&[0.5, 0.5], &[true, false]), 0.25);
        assert_eq!(brier(&[1.0, 0.0], &[true, false]), 0.0);
        assert!((log_loss(&[0.5], &[true]) - 2f64.ln()).abs() < 1e-12);
        let bins = calibration(&[0.05, 0.15, 0.95, 1.0], &[false, true, true, true], 10);
        assert_eq!(bins.len(), 3);
        assert_eq!(bins[2].count, 2);
        assert_eq!(bins[2].observed, 1.0);
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
    }
}

//! Scores, as the original subnet paid them: `(9 · quality + 1 · speed) / 10`, where speed is
//! `exp(−t / (T − t))` for a response after `t` of the allowed `T` seconds. Quality is the
//! judge's when there is one (`(2 · quality + brevity) / 3`), else correctness alone (1
//! resolved, 0 not). An unresolved patch earns nothing for speed.

/// The speed term for a response after `t` seconds of `limit`.
pub fn time_score(t: f64, limit: f64) -> f64 {
    if !(t.is_finite() && limit > 0.0) || t >= limit {
        return 0.0;
    }
    let t = t.max(0.0);
    (-t / (limit - t)).exp()
}

/// The quality term of a judged patch: the judge's quality counts twice its brevity.
pub fn judged_quality(quality: f64, brevity: f64) -> f64 {
    (2.0 * quality.clamp(0.0, 1.0) + brevity.clamp(0.0, 1.0)) / 3.0
}

/// The final score of one response.
pub fn final_score(resolved: bool, judge_quality: Option<f64>, time: f64) -> f64 {
    if !resolved {
        return 0.0;
    }
    let quality = judge_quality.unwrap_or(1.0).clamp(0.0, 1.0);
    (9.0 * quality + time.clamp(0.0, 1.0)) / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faster_is_better_and_late_is_nothing() {
        assert_eq!(time_score(0.0, 600.0), 1.0);
        assert!(time_score(60.0, 600.0) > time_score(300.0, 600.0));
        assert_eq!(time_score(600.0, 600.0), 0.0);
        assert_eq!(time_score(f64::NAN, 600.0), 0.0);
    }

    #[test]
    fn only_resolved_patches_score() {
        assert_eq!(final_score(false, Some(1.0), 1.0), 0.0);
        assert!((final_score(true, None, 0.5) - 0.95).abs() < 1e-12);
        assert!((final_score(true, Some(0.5), 0.0) - 0.45).abs() < 1e-12);
        assert!((judged_quality(0.5, 1.0) - 2.0 / 3.0).abs() < 1e-12);
    }
}

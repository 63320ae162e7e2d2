//! Scores, as the original subnet paid them: `(9 · quality + 1 · speed) / 10`, where speed is
//! `exp(−t / (T − t))` for a response after `t` of the allowed `T` seconds. A patch whose
//! tests are not green earns nothing, for speed either.
//!
//! What quality is depends on the task's [`Grading`]: for a task whose tests prove the fix,
//! the judge's when there is one (`(2 · quality + brevity) / 3`), else correctness alone (1);
//! for a task graded by its checklist (an open issue: no FAIL_TO_PASS, green means no
//! regressions), the judge's alone: an unjudged patch there has no score ([`Score::Unjudged`]),
//! which is the validator's failure, never the miner's.

use crate::tasks::Grading;

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

/// The score of one evaluated response.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Score {
    Scored(f64),
    /// A checklist-graded patch with green tests that no judge rated: nothing says whether it
    /// does what the issue asks, so it is not scored (recorded as 0, not charged).
    Unjudged,
}

impl Score {
    /// The number recorded: an unjudged patch's is 0.
    pub fn value(self) -> f64 {
        match self {
            Score::Scored(s) => s,
            Score::Unjudged => 0.0,
        }
    }
}

/// The final score of one response: `green` is the evaluation's (every selected test passed),
/// `judge_quality` the judged quality ([`judged_quality`]), `time` the speed term.
pub fn final_score(grading: Grading, green: bool, judge_quality: Option<f64>, time: f64) -> Score {
    if !green {
        return Score::Scored(0.0);
    }
    let quality = match (grading, judge_quality) {
        (_, Some(q)) => q.clamp(0.0, 1.0),
        (Grading::Tests, None) => 1.0,
        (Grading::Checklist, None) => return Score::Unjudged,
    };
    Score::Scored((9.0 * quality + time.clamp(0.0, 1.0)) / 10.0)
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
        let t = Grading::Tests;
        assert_eq!(final_score(t, false, Some(1.0), 1.0), Score::Scored(0.0));
        assert!((final_score(t, true, None, 0.5).value() - 0.95).abs() < 1e-12);
        assert!((final_score(t, true, Some(0.5), 0.0).value() - 0.45).abs() < 1e-12);
        assert!((judged_quality(0.5, 1.0) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn a_checklist_task_is_scored_by_the_judge_and_zero_on_a_regression() {
        let c = Grading::Checklist;
        // A regression: nothing, whatever the judge thought.
        assert_eq!(final_score(c, false, Some(1.0), 1.0), Score::Scored(0.0));
        // Green tests prove no fix: the judge's quality is the whole quality.
        assert!((final_score(c, true, Some(0.3), 0.0).value() - 0.27).abs() < 1e-12);
        assert_eq!(final_score(c, true, None, 1.0), Score::Unjudged);
        assert_eq!(Score::Unjudged.value(), 0.0);
    }
}

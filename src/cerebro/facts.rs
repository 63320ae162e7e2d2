//! What Cerebro reads about a task: [`TaskFacts`], one lenient shape for SWE-bench rows (the
//! training data's `tasks.jsonl`), agentao's own [`Task`]s (forged or from GitHub) and the
//! little a `Forecast` synapse carries (statement and repository).

use serde::{Deserialize, Deserializer, Serialize};

use crate::tasks::Task;

/// The fields of a task that features are computed from. Every field but `instance_id` may be
/// missing; unknown fields are ignored, so a `tasks.jsonl` row, an exported task and a
/// hand-written row all read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskFacts {
    pub instance_id: String,
    #[serde(default)]
    pub repo: String,
    #[serde(default)]
    pub problem_statement: String,
    #[serde(default)]
    pub hints_text: String,
    /// The gold patch (empty when the fix is not known: a new issue).
    #[serde(default)]
    pub patch: String,
    #[serde(default)]
    pub test_patch: String,
    #[serde(rename = "FAIL_TO_PASS", default, deserialize_with = "lenient_list")]
    pub fail_to_pass: Vec<String>,
    #[serde(rename = "PASS_TO_PASS", default, deserialize_with = "lenient_list")]
    pub pass_to_pass: Vec<String>,
    /// The forge's mutation (`compare_swap`, ...); empty for other tasks.
    #[serde(default)]
    pub mutation_kind: String,
    /// SWE-bench Verified's human time bucket (`"<15 min fix"`, `"15 min - 1 hour"`, ...) when
    /// the row is a string; agentao's forge measurements when it is an object.
    #[serde(default)]
    pub difficulty: serde_json::Value,
}

/// Lists as JSON lists or as JSON strings holding lists (SWE-bench's habit); null is empty.
fn lenient_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
        Null(()),
    }
    match Either::deserialize(d)? {
        Either::List(v) => Ok(v),
        Either::Text(t) if t.trim().is_empty() => Ok(Vec::new()),
        Either::Text(t) => serde_json::from_str(&t).map_err(serde::de::Error::custom),
        Either::Null(()) => Ok(Vec::new()),
    }
}

impl TaskFacts {
    /// The facts of a stored task: everything the validator holds, the hidden fix included.
    pub fn from_task(task: &Task) -> TaskFacts {
        TaskFacts {
            instance_id: task.instance_id.clone(),
            repo: task.repo.clone(),
            problem_statement: task.problem_statement.clone(),
            hints_text: task.hints_text.clone(),
            patch: task.patch.clone(),
            test_patch: task.test_patch.clone(),
            fail_to_pass: task.fail_to_pass.clone(),
            pass_to_pass: task.pass_to_pass.clone(),
            mutation_kind: task.mutation_kind.clone(),
            // The forge's measurements when there are some, else the time bucket's label.
            difficulty: match &task.difficulty_features {
                Some(d) => serde_json::to_value(d).unwrap_or_default(),
                None if !task.difficulty.is_empty() => task.difficulty.clone().into(),
                None => serde_json::Value::Null,
            },
        }
    }

    /// The facts of a question that carries only the statement and the repository (what a
    /// miner sees in a `Forecast`).
    pub fn from_statement(instance_id: &str, repo: &str, statement: &str) -> TaskFacts {
        TaskFacts {
            instance_id: instance_id.to_owned(),
            repo: repo.to_owned(),
            problem_statement: statement.to_owned(),
            ..TaskFacts::default()
        }
    }

    /// Whether the fix is known (then the model's `fix` head applies, else its `text` head).
    pub fn knows_fix(&self) -> bool {
        !self.patch.trim().is_empty()
    }

    /// The human time bucket's index (0: under 15 minutes ... 3: over 4 hours), when the row
    /// carries one.
    pub fn time_bucket(&self) -> Option<usize> {
        let s = self.difficulty.as_str()?.trim();
        TIME_BUCKETS.iter().position(|b| b.label == s)
    }

    /// A number from the forge's measurements (`difficulty` as an object), 0 when absent.
    pub fn forge_number(&self, key: &str) -> f64 {
        self.difficulty
            .get(key)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    }
}

/// One of SWE-bench Verified's time-to-fix buckets, with the minutes the effort head takes as
/// its value (a representative point inside the bucket).
#[derive(Debug, Clone, Copy)]
pub struct TimeBucket {
    pub label: &'static str,
    pub minutes: f64,
}

/// The buckets, shortest first. The representative minutes are the geometric middles of
/// 5–15, 15–60, 60–240 and 240–960 minutes.
pub const TIME_BUCKETS: [TimeBucket; 4] = [
    TimeBucket {
        label: "<15 min fix",
        minutes: 8.66,
    },
    TimeBucket {
        label: "15 min - 1 hour",
        minutes: 30.0,
    },
    TimeBucket {
        label: "1-4 hours",
        minutes: 120.0,
    },
    TimeBucket {
        label: ">4 hours",
        minutes: 480.0,
    },
];

/// The bucket an estimate of minutes falls in (boundaries at 15, 60 and 240 minutes).
pub fn bucket_of_minutes(minutes: f64) -> usize {
    match minutes {
        m if m < 15.0 => 0,
        m if m < 60.0 => 1,
        m if m < 240.0 => 2,
        _ => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swe_bench_rows_forge_rows_and_bare_statements_read() {
        let swe = r#"{"instance_id":"a__b-1","repo":"a/b","problem_statement":"s","patch":"p",
            "difficulty":"1-4 hours","FAIL_TO_PASS":"[\"t::x\"]","extra":3}"#;
        let f: TaskFacts = serde_json::from_str(swe).unwrap();
        assert_eq!(f.time_bucket(), Some(2));
        assert_eq!(f.fail_to_pass, ["t::x"]);
        assert!(f.knows_fix());
        let forged = r#"{"instance_id":"x","FAIL_TO_PASS":["a","b"],"PASS_TO_PASS":null,
            "difficulty":{"function_lines":12,"source_files":40}}"#;
        let f: TaskFacts = serde_json::from_str(forged).unwrap();
        assert_eq!(f.time_bucket(), None);
        assert_eq!(f.forge_number("function_lines"), 12.0);
        assert_eq!(f.forge_number("missing"), 0.0);
        assert!(!f.knows_fix());
        assert!(serde_json::from_str::<TaskFacts>(r#"{"repo":"a/b"}"#).is_err());
    }

    #[test]
    fn minutes_fall_in_their_buckets() {
        for (i, b) in TIME_BUCKETS.iter().enumerate() {
            assert_eq!(bucket_of_minutes(b.minutes), i, "{}", b.label);
        }
    }
}

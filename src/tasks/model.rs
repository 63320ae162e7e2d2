//! The task instance: SWE-bench's fields plus agentao's own.

use serde::{Deserialize, Serialize};

/// One coding task. Field names follow SWE-bench so exports load in its tooling; agentao's
/// additions have defaults so SWE-bench rows read as tasks too.
///
/// A forged task's environment image holds the package's clean source at `/repo`; the bug
/// (`bug_patch`) is applied at run time, so one image serves every task of a package version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub instance_id: String,
    /// "owner/name" on GitHub, or "pypi/<package>" for forged tasks.
    pub repo: String,
    /// Commit of the buggy tree (clean source + bug) in the task's repository.
    #[serde(default)]
    pub base_commit: String,
    /// The gold patch: applied to the buggy tree, it makes every test pass.
    pub patch: String,
    /// Test changes to apply before running tests (empty for forged tasks: the tests exist).
    #[serde(default)]
    pub test_patch: String,
    pub problem_statement: String,
    #[serde(default)]
    pub hints_text: String,
    #[serde(default)]
    pub created_at: String,
    #[serde(default)]
    pub version: String,
    #[serde(rename = "FAIL_TO_PASS", with = "json_list")]
    pub fail_to_pass: Vec<String>,
    #[serde(rename = "PASS_TO_PASS", with = "json_list")]
    pub pass_to_pass: Vec<String>,
    #[serde(default)]
    pub environment_setup_commit: String,
    /// PyPI package the task was forged from.
    #[serde(default)]
    pub package: String,
    #[serde(default)]
    pub pypi_version: String,
    /// Docker image of the task's environment.
    #[serde(default)]
    pub image: String,
    /// The procedural mutation that made the bug (`compare_swap`, ...).
    #[serde(default)]
    pub mutation_kind: String,
    /// Patch that turns the image's clean `/repo` into the buggy tree (hidden from miners).
    #[serde(default)]
    pub bug_patch: String,
    /// Files a submitted patch may not touch (the tests that judge it).
    #[serde(default)]
    pub test_files: Vec<String>,
    /// How long a fix takes, in SWE-bench Verified's words ([`DIFFICULTY_LEVELS`]); for a
    /// forged task, estimated from its features. Empty when unknown.
    #[serde(
        default,
        deserialize_with = "difficulty_level",
        skip_serializing_if = "String::is_empty"
    )]
    pub difficulty: String,
    /// Features for difficulty prediction (forged tasks only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty_features: Option<Difficulty>,
    /// Cerebro's prediction for the task, made when it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_difficulty: Option<PredictedDifficulty>,
}

/// How hard Cerebro (`cerebro/`) predicts a task is.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PredictedDifficulty {
    /// β of the item-response model, in logits: an agent of ability θ resolves the task with
    /// probability σ(θ − β) (flattened for the uncertainty of a new task). Higher is harder.
    pub beta: f64,
    /// P(resolve) for an agent of median ability among the published systems it was trained on.
    pub p_typical: f64,
    /// Minutes a human engineer would need (SWE-bench Verified's time-to-fix annotation).
    #[serde(default)]
    pub human_minutes: Option<f64>,
    /// The head that answered: `fix` (gold patch and tests read) or `text` (statement only).
    pub head: String,
}

/// SWE-bench Verified's `difficulty` values, easiest first.
pub const DIFFICULTY_LEVELS: [&str; 4] =
    ["<15 min fix", "15 min - 1 hour", "1-4 hours", ">4 hours"];

/// What makes a forged task hard or easy, measured when it was forged.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Difficulty {
    /// Lines added plus removed by the gold patch.
    pub gold_lines: u32,
    pub gold_files: u32,
    pub fail_to_pass: u32,
    pub pass_to_pass: u32,
    /// Length of the mutated function in lines.
    pub function_lines: u32,
    /// Python files in the package (how much there is to search).
    pub source_files: u32,
    /// Seconds the selected tests took with the gold patch.
    pub test_seconds: f64,
    /// Words in the problem statement.
    pub statement_words: u32,
}

impl Difficulty {
    /// The SWE-bench Verified level these features suggest: by the size of the fix, one level
    /// up when it hides in a long function or a large package.
    pub fn level(&self) -> &'static str {
        let by_size = match (self.gold_lines, self.gold_files) {
            (0..=2, 0..=1) => 0,
            (0..=10, 0..=2) => 1,
            (0..=50, _) => 2,
            _ => 3,
        };
        let hidden = usize::from(self.function_lines > 40 || self.source_files > 200);
        DIFFICULTY_LEVELS[(by_size + hidden).min(3)]
    }
}

/// `difficulty` as SWE-bench Verified writes it (a string); the object older agentao task
/// files held there reads as the level its features suggest.
fn difficulty_level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Level(String),
        Features(Difficulty),
        Nothing(()),
    }
    Ok(match Either::deserialize(d)? {
        Either::Level(s) => s,
        Either::Features(f) => f.level().to_owned(),
        Either::Nothing(()) => String::new(),
    })
}

impl Task {
    /// Every test the verdict depends on, F2P first.
    pub fn selected_tests(&self) -> Vec<String> {
        let mut all = self.fail_to_pass.clone();
        all.extend(self.pass_to_pass.iter().cloned());
        all
    }

    /// The files holding the selected tests (the part of a node id before `::`), plus
    /// `test_files`.
    pub fn protected_files(&self) -> Vec<String> {
        let mut files: Vec<String> = self
            .selected_tests()
            .iter()
            .map(|id| id.split("::").next().unwrap_or(id).to_owned())
            .chain(self.test_files.iter().cloned())
            .collect();
        files.sort();
        files.dedup();
        files
    }
}

/// SWE-bench stores F2P/P2P as JSON strings holding lists; accept both that and plain lists,
/// write plain lists.
mod json_list {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Either {
            List(Vec<String>),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::List(v) => Ok(v),
            Either::Text(t) => serde_json::from_str(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swe_bench_rows_with_string_lists_parse() {
        let row = r#"{"instance_id":"a__b-1","repo":"a/b","base_commit":"abc","patch":"p",
            "problem_statement":"s","FAIL_TO_PASS":"[\"t.py::x\"]","PASS_TO_PASS":"[]"}"#;
        let t: Task = serde_json::from_str(row).unwrap();
        assert_eq!(t.fail_to_pass, vec!["t.py::x"]);
        assert!(t.pass_to_pass.is_empty());
        assert_eq!(t.protected_files(), vec!["t.py"]);
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(back["FAIL_TO_PASS"], serde_json::json!(["t.py::x"]));
    }

    #[test]
    fn difficulty_is_a_swe_bench_verified_string() {
        let verified = r#"{"instance_id":"a__b-1","repo":"a/b","patch":"p","problem_statement":"s",
            "FAIL_TO_PASS":"[]","PASS_TO_PASS":"[]","difficulty":"15 min - 1 hour"}"#;
        let t: Task = serde_json::from_str(verified).unwrap();
        assert_eq!(t.difficulty, "15 min - 1 hour");
        // An older agentao row held the features there.
        let old = r#"{"instance_id":"a__b-1","repo":"a/b","patch":"p","problem_statement":"s",
            "FAIL_TO_PASS":[],"PASS_TO_PASS":[],"difficulty":{"gold_lines":2,"gold_files":1,
            "fail_to_pass":1,"pass_to_pass":3,"function_lines":12,"source_files":9,
            "test_seconds":0.5,"statement_words":40}}"#;
        let mut t: Task = serde_json::from_str(old).unwrap();
        assert_eq!(t.difficulty, "<15 min fix");
        t.difficulty_features = Some(Difficulty {
            gold_lines: 2,
            function_lines: 80,
            ..Difficulty::default()
        });
        t.difficulty = t.difficulty_features.as_ref().unwrap().level().to_owned();
        let back = serde_json::to_value(&t).unwrap();
        assert_eq!(back["difficulty"], "15 min - 1 hour");
        assert_eq!(back["difficulty_features"]["function_lines"], 80);
        assert!(DIFFICULTY_LEVELS.contains(&back["difficulty"].as_str().unwrap()));
    }
}

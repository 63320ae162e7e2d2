//! The task instance: SWE-bench's fields plus agentao's own.

use serde::{Deserialize, Serialize};

use super::spec::Exposure;

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
    /// What a good fix does, one point an item, for the judge (empty when the task has none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checklist: Vec<String>,
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
    /// Where the task came from: empty for forged tasks, `github` for a harvested issue.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Who can read the answer without solving it, as stated when the task was made:
    /// `public-answer` (a merged fix) or `none` (an open issue, a private task). Unstated
    /// (forged tasks, SWE-bench rows), [`Exposure::of`] reads it from what the task holds.
    #[serde(
        default,
        deserialize_with = "exposure_stated",
        skip_serializing_if = "Option::is_none"
    )]
    pub exposure: Option<Exposure>,
    /// The issue the task was written from (harvested tasks).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issue_url: String,
    /// Cerebro's prediction for the task, made when it was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_difficulty: Option<PredictedDifficulty>,
    /// Set when FAIL_TO_PASS is a cut of a longer list: where, and at how many tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub f2p_capped: Option<F2pCap>,
    /// The wrong fixes the forge tried and the tests refused (`delete_block`, `early_return`,
    /// `operator:<`, ...): a task is stored only when its tests refuse every one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decoys_refused: Vec<String>,
    /// Which stable tests execute which functions, for widening PASS_TO_PASS to what a patch
    /// touches at evaluation time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regression: Option<RegressionIndex>,
    /// What the model-free repair baseline did on the task, when it was tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<RepairOutcome>,
}

/// FAIL_TO_PASS was cut: `at` names the step (`forge.selection`: the candidate's tests were
/// capped at `limit` of `covering` tests executing the mutated function).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct F2pCap {
    pub at: String,
    pub limit: u32,
    pub covering: u32,
}

/// How the repair baseline fared on a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairOutcome {
    pub solved: bool,
    /// Candidate patches it ran before solving or giving up.
    pub repair_candidates: u32,
    pub seconds: f64,
}

/// Stable tests (passed twice in the clean baseline) and the functions each executes, at the
/// forge's coverage. Tests are indices into `tests`; each function's list is written as
/// sorted ranges (`"0-15,20,22-30"`), which keeps a suite of thousands of tests small.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RegressionIndex {
    pub tests: Vec<String>,
    pub functions: Vec<FunctionTests>,
}

/// One function of the clean source (lines 1-based, inclusive) and the tests executing it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionTests {
    pub file: String,
    pub name: String,
    pub first: u32,
    pub last: u32,
    pub tests: String,
}

impl RegressionIndex {
    /// Node ids of the tests in `ranges` (unreadable parts and indices out of range are
    /// skipped: the index only ever widens a selection).
    pub fn tests_of(&self, ranges: &str) -> Vec<&str> {
        let mut out = Vec::new();
        for part in ranges.split(',').filter(|p| !p.is_empty()) {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) else {
                continue;
            };
            for i in a..=b.min(self.tests.len().saturating_sub(1)) {
                out.push(self.tests[i].as_str());
            }
        }
        out
    }
}

/// Sorted, distinct indices as ranges (`[0,1,2,5]` → `"0-2,5"`).
pub fn index_ranges(sorted: &[usize]) -> String {
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        out.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    out.join(",")
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

/// `source` of a task harvested from GitHub.
pub const SOURCE_GITHUB: &str = "github";
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

/// `exposure` as stored: a known kind, or nothing (missing, null or empty). An unknown kind is
/// an error, not a silent `None`: it would widen who may be sent the task.
fn exposure_stated<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Exposure>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => Exposure::parse(s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown exposure {s:?}"))),
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

/// How a patch for a task is graded: what its tests can prove, and what is left to the judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grading {
    /// Tests prove the fix: every FAIL_TO_PASS must pass and PASS_TO_PASS stay green; the
    /// judge may lower a resolved patch's score, and without a judgement correctness alone
    /// counts.
    Tests,
    /// No test proves a fix (an open issue: no gold patch, so no FAIL_TO_PASS). PASS_TO_PASS
    /// must stay green (a patch that breaks one scores 0), and the judge's reading against the
    /// task's checklist is the whole quality: without a judgement there is no score.
    Checklist,
}

impl Task {
    /// How a patch for this task is graded: by its tests when it has FAIL_TO_PASS tests, by
    /// the judge's checklist (over PASS_TO_PASS) when it has none.
    pub fn grading(&self) -> Grading {
        if self.fail_to_pass.is_empty() {
            Grading::Checklist
        } else {
            Grading::Tests
        }
    }

    /// Every test the verdict depends on, F2P first.
    pub fn selected_tests(&self) -> Vec<String> {
        let mut all = self.fail_to_pass.clone();
        all.extend(self.pass_to_pass.iter().cloned());
        all
    }

    /// The files holding the selected tests and the tests an evaluation may add (the part of
    /// a node id before `::`), plus `test_files`.
    pub fn protected_files(&self) -> Vec<String> {
        let mut tests = self.selected_tests();
        if let Some(index) = &self.regression {
            tests.extend(index.tests.iter().cloned());
        }
        let mut files: Vec<String> = tests
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
        assert!(back.get("regression").is_none() && t.regression.is_none());
    }

    #[test]
    fn exposure_is_stored_typed_and_read_leniently() {
        let row = |exposure: &str| {
            format!(
                r#"{{"instance_id":"a","repo":"a/b","patch":"","problem_statement":"s",
                "FAIL_TO_PASS":[],"PASS_TO_PASS":[]{exposure}}}"#
            )
        };
        let none: Task = serde_json::from_str(&row(r#","exposure":"none""#)).unwrap();
        assert_eq!(none.exposure, Some(Exposure::None));
        assert_eq!(serde_json::to_value(&none).unwrap()["exposure"], "none");
        for unstated in ["", r#","exposure":"""#, r#","exposure":null"#] {
            let t: Task = serde_json::from_str(&row(unstated)).unwrap();
            assert_eq!(t.exposure, None);
            assert!(serde_json::to_value(&t).unwrap().get("exposure").is_none());
        }
        assert!(serde_json::from_str::<Task>(&row(r#","exposure":"secret""#)).is_err());
    }

    #[test]
    fn index_ranges_round_trip() {
        let idx = RegressionIndex {
            tests: (0..8).map(|i| format!("t.py::t{i}")).collect(),
            functions: vec![],
        };
        let r = index_ranges(&[0, 1, 2, 5, 7]);
        assert_eq!(r, "0-2,5,7");
        assert_eq!(
            idx.tests_of(&r),
            vec!["t.py::t0", "t.py::t1", "t.py::t2", "t.py::t5", "t.py::t7"]
        );
        assert_eq!(idx.tests_of("6-99,x,"), vec!["t.py::t6", "t.py::t7"]);
        assert_eq!(index_ranges(&[]), "");
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

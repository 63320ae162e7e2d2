//! The dataset record: one (problem, solution, score) with everything a researcher needs to
//! learn from it. Task fields keep SWE-bench's names and meanings: `patch` is the gold fix, as
//! in every SWE-bench file, and the miner's patch is `model_patch`, as in SWE-bench's
//! predictions. Records written before that (`gold_patch` beside a miner's `patch`, the
//! difficulty features in `difficulty`, an empty trajectory) are read into today's shape.

use serde::{Deserialize, Serialize};

use crate::tasks::Task;

/// One row of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the local store (assigned on append).
    #[serde(default)]
    pub seq: u64,
    /// When the record was made (RFC 3339, UTC).
    pub recorded_at: String,
    pub round_id: String,
    pub validator_hotkey: String,
    pub agentao_version: String,

    // The task, with SWE-bench's field names.
    pub instance_id: String,
    pub repo: String,
    pub base_commit: String,
    pub problem_statement: String,
    pub hints_text: String,
    pub version: String,
    /// The gold patch (SWE-bench's `patch`).
    pub patch: String,
    /// JSON lists, as SWE-bench stores them.
    #[serde(rename = "FAIL_TO_PASS")]
    pub fail_to_pass: String,
    #[serde(rename = "PASS_TO_PASS")]
    pub pass_to_pass: String,
    pub task_created_at: String,
    pub package: String,
    pub pypi_version: String,
    pub mutation_kind: String,
    /// SWE-bench Verified's difficulty level (`<15 min fix`, ...), empty when unknown.
    pub difficulty: String,
    /// Difficulty features of the task (JSON object; `{}` when none).
    pub difficulty_features: String,

    // The solution.
    pub miner_hotkey: String,
    pub miner_uid: i64,
    pub agent: String,
    pub model: String,
    /// The miner's patch (SWE-bench predictions' `model_patch`).
    pub model_patch: String,
    /// The agent's trajectory (JSON; `null` when the miner sent none).
    pub trajectory: String,

    // The verdict and the scores.
    pub resolved: bool,
    /// `resolved`, `unresolved`, `patch_rejected`, ...
    pub outcome: String,
    /// Why, when the outcome has a reason (the refused path, the tampering seen, the call's
    /// failure).
    #[serde(default)]
    pub outcome_reason: String,
    /// Per-test status (JSON object: node id -> status).
    pub tests_status: String,
    pub judge_quality: Option<f64>,
    pub judge_brevity: Option<f64>,
    pub time_score: f64,
    pub final_score: f64,
    /// The miner's episode ended in a model error (its model stopped answering), or the miner
    /// answered that its model is down: filter these rows out to study agents, not outages.
    #[serde(default)]
    pub model_error: bool,

    // Costs and timings.
    pub cost_usd: f64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub response_seconds: f64,
    pub eval_seconds: f64,

    // Forecasts (Cerebro), made before the answer was judged: the outcome above is what
    // they are scored against.
    /// β of the task (logits; higher is harder).
    #[serde(default)]
    pub forecast_difficulty: Option<f64>,
    /// The validator's probability that this miner's answer resolves the task.
    #[serde(default)]
    pub forecast_p_resolve: Option<f64>,
    /// The miner's own forecast (its `Forecast` answer), when it gave one.
    #[serde(default)]
    pub miner_forecast: Option<f64>,
}

impl Record {
    /// The task fields of a record, everything else empty or zero.
    pub fn for_task(task: &Task) -> Record {
        Record {
            seq: 0,
            recorded_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            round_id: String::new(),
            validator_hotkey: String::new(),
            agentao_version: env!("CARGO_PKG_VERSION").to_owned(),
            instance_id: task.instance_id.clone(),
            repo: task.repo.clone(),
            base_commit: task.base_commit.clone(),
            problem_statement: task.problem_statement.clone(),
            hints_text: task.hints_text.clone(),
            version: task.version.clone(),
            patch: task.patch.clone(),
            fail_to_pass: serde_json::to_string(&task.fail_to_pass).unwrap_or_default(),
            pass_to_pass: serde_json::to_string(&task.pass_to_pass).unwrap_or_default(),
            task_created_at: task.created_at.clone(),
            package: task.package.clone(),
            pypi_version: task.pypi_version.clone(),
            mutation_kind: task.mutation_kind.clone(),
            difficulty: task.difficulty.clone(),
            difficulty_features: task
                .difficulty_features
                .as_ref()
                .and_then(|d| serde_json::to_string(d).ok())
                .unwrap_or_else(|| "{}".into()),
            miner_hotkey: String::new(),
            miner_uid: -1,
            agent: String::new(),
            model: String::new(),
            model_patch: String::new(),
            trajectory: "null".into(),
            resolved: false,
            outcome: String::new(),
            outcome_reason: String::new(),
            tests_status: "{}".into(),
            judge_quality: None,
            judge_brevity: None,
            time_score: 0.0,
            final_score: 0.0,
            model_error: false,
            cost_usd: 0.0,
            prompt_tokens: 0,
            completion_tokens: 0,
            response_seconds: 0.0,
            eval_seconds: 0.0,
            forecast_difficulty: task.predicted_difficulty.as_ref().map(|d| d.beta),
            forecast_p_resolve: None,
            miner_forecast: None,
        }
    }
}

impl Record {
    /// Reads one stored line, bringing a record of the first layout (`gold_patch` beside the
    /// miner's `patch`, features in `difficulty`, an empty trajectory) into today's.
    pub fn from_json(line: &str) -> Result<Record, serde_json::Error> {
        match serde_json::from_str(line) {
            Ok(r) => Ok(r),
            Err(e) => {
                let mut v: serde_json::Value = serde_json::from_str(line)?;
                match v.as_object_mut() {
                    Some(obj) if obj.contains_key("gold_patch") => upgrade(obj),
                    _ => return Err(e),
                }
                serde_json::from_value(v)
            }
        }
    }
}

/// The first layout's fields renamed and re-read (see [`Record::from_json`]).
fn upgrade(obj: &mut serde_json::Map<String, serde_json::Value>) {
    use serde_json::Value;
    let gold = obj.remove("gold_patch").unwrap_or_default();
    let miners = obj.remove("patch").unwrap_or(Value::String(String::new()));
    obj.insert("patch".into(), gold);
    obj.insert("model_patch".into(), miners);
    let features = obj
        .get("difficulty")
        .and_then(Value::as_str)
        .unwrap_or("{}")
        .to_owned();
    let level = serde_json::from_str::<crate::tasks::Difficulty>(&features)
        .map(|d| d.level().to_owned())
        .unwrap_or_default();
    obj.insert("difficulty".into(), Value::String(level));
    obj.insert("difficulty_features".into(), Value::String(features));
    if obj.get("trajectory").and_then(Value::as_str) == Some("") {
        obj.insert("trajectory".into(), Value::String("null".into()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_of_the_first_layout_reads_with_swe_benchs_meanings() {
        let task: Task = serde_json::from_value(serde_json::json!({
            "instance_id": "p__1-a", "repo": "pypi/p", "patch": "GOLD", "problem_statement": "s",
            "FAIL_TO_PASS": [], "PASS_TO_PASS": []
        }))
        .unwrap();
        let mut now = Record::for_task(&task);
        now.model_patch = "MINER".into();
        let line = serde_json::to_string(&now).unwrap();
        assert_eq!(Record::from_json(&line).unwrap(), now);
        assert_eq!(now.trajectory, "null", "JSON even when the miner sent none");

        let mut old: serde_json::Value = serde_json::from_str(&line).unwrap();
        let o = old.as_object_mut().unwrap();
        o.insert("gold_patch".into(), "GOLD".into());
        o.insert("patch".into(), "MINER".into());
        o.remove("model_patch");
        o.remove("difficulty_features");
        o.insert(
            "difficulty".into(),
            r#"{"gold_lines":2,"gold_files":1,"fail_to_pass":1,"pass_to_pass":0,"function_lines":5,"source_files":3,"test_seconds":0.1,"statement_words":9}"#.into(),
        );
        o.insert("trajectory".into(), "".into());
        let read = Record::from_json(&old.to_string()).unwrap();
        assert_eq!(
            (read.patch.as_str(), read.model_patch.as_str()),
            ("GOLD", "MINER")
        );
        assert_eq!(read.difficulty, "<15 min fix");
        assert!(read.difficulty_features.contains("\"gold_lines\":2"));
        assert_eq!(read.trajectory, "null");
        assert!(
            Record::from_json("{\"seq\": 1}").is_err(),
            "garbage stays an error"
        );
    }
}

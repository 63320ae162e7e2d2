//! The dataset record: one (problem, solution, score) with everything a researcher needs to
//! learn from it. Task fields keep SWE-bench's names.

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
    /// The gold patch.
    pub gold_patch: String,
    /// JSON lists, as SWE-bench stores them.
    #[serde(rename = "FAIL_TO_PASS")]
    pub fail_to_pass: String,
    #[serde(rename = "PASS_TO_PASS")]
    pub pass_to_pass: String,
    pub task_created_at: String,
    pub package: String,
    pub pypi_version: String,
    pub mutation_kind: String,
    /// Difficulty features of the task (JSON object).
    pub difficulty: String,

    // The solution.
    pub miner_hotkey: String,
    pub miner_uid: i64,
    pub agent: String,
    pub model: String,
    pub patch: String,
    /// The agent's trajectory (JSON).
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
            gold_patch: task.patch.clone(),
            fail_to_pass: serde_json::to_string(&task.fail_to_pass).unwrap_or_default(),
            pass_to_pass: serde_json::to_string(&task.pass_to_pass).unwrap_or_default(),
            task_created_at: task.created_at.clone(),
            package: task.package.clone(),
            pypi_version: task.pypi_version.clone(),
            mutation_kind: task.mutation_kind.clone(),
            difficulty: task
                .difficulty
                .as_ref()
                .and_then(|d| serde_json::to_string(d).ok())
                .unwrap_or_else(|| "{}".into()),
            miner_hotkey: String::new(),
            miner_uid: -1,
            agent: String::new(),
            model: String::new(),
            patch: String::new(),
            trajectory: String::new(),
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

//! The LLM judge: rates a patch that already resolved its task for quality (would a maintainer
//! merge it) and brevity (no more change than the fix needs), each in [0, 1], with the prompts
//! `judge_system` and `judge_instance`, and the task's checklist when it has one. A task with
//! no reference fix (an open issue: its tests only show the patch broke nothing) is judged with
//! `judge_checklist_system` instead: quality is how fully the patch does what the checklist
//! says. Sampling is
//! fixed ([`TEMPERATURE`], [`SEED`]) so validators asking the same model agree. The answer must
//! hold one JSON object with both numbers in range; anything else is an error, and the caller
//! scores on correctness alone. The caller hands in the patch as the judge may see it (comments
//! and added prose taken out: `eval::reading::for_review`); this module only asks.

use serde::{Deserialize, Serialize};

use super::client::{Budget, LlmClient, LlmError, Message};
use crate::prompts;

/// Longest patch text sent to the judge (characters); longer ones are cut, which the judge
/// sees.
const MAX_PATCH_CHARS: usize = 24_000;

/// What the judge said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub quality: f64,
    pub brevity: f64,
    #[serde(default)]
    pub reason: String,
    /// Dollars the judgement cost.
    #[serde(default)]
    pub cost: f64,
}

/// Why there is no judgement.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("the judge's answer is not a judgement: {0}")]
    Unreadable(String),
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_PATCH_CHARS {
        return text.to_owned();
    }
    let mut end = MAX_PATCH_CHARS;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n... [cut: {} more bytes]",
        &text[..end],
        text.len() - end
    )
}

/// The judge's sampling temperature.
pub const TEMPERATURE: f32 = 0.0;
/// The judge's sampling seed.
pub const SEED: u64 = 62;

/// What the judge is shown.
#[derive(Debug, Clone, Copy)]
pub struct JudgeInput<'a> {
    pub problem_statement: &'a str,
    /// The patch as the judge may see it.
    pub patch: &'a str,
    /// The reference fix; `None` when there is none (an open issue), and then the checklist
    /// is all the judge has to go by.
    pub reference: Option<&'a str>,
    /// What a good fix of this task does, one point a line (may be empty).
    pub checklist: &'a [String],
}

/// The checklist as the prompt shows it.
fn checklist_text(items: &[String]) -> String {
    if items.is_empty() {
        return "(this task has no checklist)".to_owned();
    }
    items
        .iter()
        .map(|i| format!("- {}", i.trim()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The messages the judge gets for `input`.
pub fn judge_messages(input: &JudgeInput<'_>) -> [Message; 2] {
    let (system, reference) = match input.reference {
        Some(r) => ("judge_system", cut(r)),
        None => (
            "judge_checklist_system",
            "(none: the issue is open and has no fix yet)".to_owned(),
        ),
    };
    [
        Message::system(prompts::get(system)),
        Message::user(prompts::render(
            prompts::get("judge_instance"),
            &[
                ("problem_statement", input.problem_statement),
                ("patch", &cut(input.patch)),
                ("reference", &reference),
                ("checklist", &checklist_text(input.checklist)),
            ],
        )),
    ]
}

/// Asks `llm` (at [`TEMPERATURE`] with [`SEED`]) to judge `input`.
pub async fn judge(
    llm: &LlmClient,
    input: &JudgeInput<'_>,
    budget: &mut Budget,
) -> Result<Judgement, JudgeError> {
    let messages = judge_messages(input);
    let completion = llm
        .with_sampling(TEMPERATURE, SEED)
        .chat(&messages, &[], budget)
        .await?;
    let mut j = parse(&completion.message.content)?;
    j.cost = completion.cost;
    Ok(j)
}

/// The judgement in a model's answer: the outermost `{…}` (fences and prose around it are
/// ignored), with `quality` and `brevity` numbers in [0, 1].
pub fn parse(answer: &str) -> Result<Judgement, JudgeError> {
    let unreadable = || JudgeError::Unreadable(answer.chars().take(120).collect());
    let (start, end) = answer
        .find('{')
        .zip(answer.rfind('}'))
        .filter(|(s, e)| s < e)
        .ok_or_else(unreadable)?;
    let j: Judgement = serde_json::from_str(&answer[start..=end]).map_err(|_| unreadable())?;
    let in_range = |x: f64| (0.0..=1.0).contains(&x);
    if !(in_range(j.quality) && in_range(j.brevity)) {
        return Err(unreadable());
    }
    Ok(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judgements_are_read_strictly() {
        let j =
            parse("```json\n{\"quality\": 0.8, \"brevity\": 1, \"reason\": \"ok\"}\n```").unwrap();
        assert_eq!((j.quality, j.brevity, j.reason.as_str()), (0.8, 1.0, "ok"));
        assert!(
            parse("{\"quality\": 8, \"brevity\": 1}").is_err(),
            "out of range"
        );
        assert!(parse("{\"quality\": 0.5}").is_err(), "brevity missing");
        assert!(parse("I think it is good").is_err());
        assert!(parse("} {").is_err());
    }

    #[test]
    fn an_open_issue_is_judged_by_its_checklist_without_a_reference() {
        let checklist = vec!["raises ValueError on an empty list".to_owned()];
        let mut input = JudgeInput {
            problem_statement: "mean([]) divides by zero",
            patch: "diff",
            reference: None,
            checklist: &checklist,
        };
        let [system, user] = judge_messages(&input);
        assert_eq!(system.content, prompts::get("judge_checklist_system"));
        assert!(
            user.content
                .contains("- raises ValueError on an empty list")
        );
        assert!(user.content.contains("no fix yet"));
        input.reference = Some("the gold diff");
        let [system, user] = judge_messages(&input);
        assert_eq!(system.content, prompts::get("judge_system"));
        assert!(user.content.contains("the gold diff"));
    }

    #[test]
    fn long_patches_are_cut_on_a_char_boundary() {
        let long = "é".repeat(MAX_PATCH_CHARS);
        let c = cut(&long);
        assert!(c.len() < long.len() && c.contains("[cut: "));
        assert_eq!(cut("short"), "short");
    }
}

//! The checklist an open issue's task is judged against, written once when the task is made
//! (as the original subnet's `dynamic_checklist` was), from the issue alone, with
//! `prompts/checklist_writer.md`. Sampling is fixed like the judge's. The answer must hold one
//! JSON array of short strings; anything else is an error and the issue makes no task.

use super::client::{Budget, LlmClient, LlmError, Message};
use crate::prompts;

/// Fewest and most points a checklist may have.
pub const POINTS: std::ops::RangeInclusive<usize> = 1..=10;
/// Longest point kept (characters).
const MAX_POINT_CHARS: usize = 400;
/// Longest issue text sent (bytes).
const MAX_ISSUE_BYTES: usize = 16_000;

/// Why there is no checklist.
#[derive(Debug, thiserror::Error)]
pub enum ChecklistError {
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error("the checklist writer's answer is not a checklist: {0}")]
    Unreadable(String),
}

/// The messages the writer gets for an issue of `repo`.
pub fn checklist_messages(repo: &str, issue: &str) -> [Message; 1] {
    let mut end = issue.len().min(MAX_ISSUE_BYTES);
    while !issue.is_char_boundary(end) {
        end -= 1;
    }
    [Message::user(prompts::render(
        prompts::get("checklist_writer"),
        &[("repo", repo), ("issue", &issue[..end])],
    ))]
}

/// Asks `llm` for the checklist of an issue of `repo` (`issue`: its statement).
pub async fn write_checklist(
    llm: &LlmClient,
    repo: &str,
    issue: &str,
    budget: &mut Budget,
) -> Result<Vec<String>, ChecklistError> {
    let completion = llm
        .with_sampling(super::judge::TEMPERATURE, super::judge::SEED)
        .chat(&checklist_messages(repo, issue), &[], budget)
        .await?;
    parse(&completion.message.content)
}

/// The checklist in an answer: the outermost `[…]` (fences and prose around it ignored), an
/// array of [`POINTS`] non-empty strings, each trimmed and cut to a bounded length.
pub fn parse(answer: &str) -> Result<Vec<String>, ChecklistError> {
    let unreadable = || ChecklistError::Unreadable(answer.chars().take(120).collect());
    let (start, end) = answer
        .find('[')
        .zip(answer.rfind(']'))
        .filter(|(s, e)| s < e)
        .ok_or_else(unreadable)?;
    let items: Vec<String> =
        serde_json::from_str(&answer[start..=end]).map_err(|_| unreadable())?;
    let items: Vec<String> = items
        .iter()
        .map(|i| i.trim().chars().take(MAX_POINT_CHARS).collect::<String>())
        .filter(|i| !i.is_empty())
        .collect();
    if !POINTS.contains(&items.len()) {
        return Err(unreadable());
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checklists_are_read_strictly() {
        let c = parse("```json\n[\" raises ValueError \", \"keeps mean([1]) == 1\"]\n```").unwrap();
        assert_eq!(c, vec!["raises ValueError", "keeps mean([1]) == 1"]);
        assert!(parse("[]").is_err(), "empty");
        assert!(parse("[1, 2]").is_err(), "not strings");
        assert!(parse("a fix should work").is_err());
        let many = serde_json::to_string(&vec!["x"; 11]).unwrap();
        assert!(parse(&many).is_err(), "too many points");
        let [m] = checklist_messages("a/b", "mean([]) fails");
        assert!(m.content.contains("a/b") && m.content.contains("mean([]) fails"));
    }
}

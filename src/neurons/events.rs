//! The telemetry events the neurons send (through [`crate::telemetry::capture`], a no-op
//! unless a PostHog key is set), built from what the round already recorded.

use crate::dataset::Record;
use crate::telemetry::Event;

/// A round's start: how many miners are asked.
pub fn round_started(round_id: &str, miners: usize) -> Event {
    Event::RoundStarted {
        round_id: round_id.to_owned(),
        miners,
    }
}

/// A task the forge made from `package`, of mutation `kind`, in `seconds`.
pub fn task_forged(package: &str, kind: &str, seconds: f64) -> Event {
    Event::TaskForged {
        package: package.to_owned(),
        kind: kind.to_owned(),
        seconds,
    }
}

/// An answer as scored: its record's outcome, score, latency, cost, tokens, model and agent.
pub fn answer_scored(record: &Record) -> Event {
    Event::AnswerScored {
        round_id: record.round_id.clone(),
        miner_uid: u16::try_from(record.miner_uid).unwrap_or(u16::MAX),
        outcome: record.outcome.clone(),
        score: record.final_score,
        latency_s: record.response_seconds,
        cost_usd: record.cost_usd,
        prompt_tokens: record.prompt_tokens.max(0) as u64,
        completion_tokens: record.completion_tokens.max(0) as u64,
        model: record.model.clone(),
        agent: record.agent.clone(),
    }
}

/// A round's end: how many answers, how many resolved, how long it took.
pub fn round_finished<T>(
    round_id: &str,
    results: &[T],
    resolved: impl Fn(&T) -> bool,
    started: std::time::Instant,
) -> Event {
    Event::RoundFinished {
        round_id: round_id.to_owned(),
        answers: results.len(),
        resolved: results.iter().filter(|r| resolved(r)).count(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

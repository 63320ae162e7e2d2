//! Unit tests of the validator's scoring rules.

use super::*;
use crate::subnet::Metagraph;

#[test]
fn outcomes_name_what_happened_and_only_the_miners_are_charged() {
    let cases = [
        (
            AnswerOutcome::Evaluated(Outcome::Resolved),
            "resolved",
            true,
        ),
        (
            AnswerOutcome::Evaluated(Outcome::EmptyPatch),
            "empty_patch",
            true,
        ),
        (
            AnswerOutcome::Evaluated(Outcome::EnvironmentError {
                message: "engine gone".into(),
            }),
            "environment_error",
            false,
        ),
        (
            AnswerOutcome::NoAnswer {
                kind: CallFailure::Unreachable,
                message: "refused".into(),
            },
            "unreachable",
            false,
        ),
        (
            AnswerOutcome::NoAnswer {
                kind: CallFailure::Timeout,
                message: String::new(),
            },
            "timeout",
            false,
        ),
        (
            AnswerOutcome::NoAnswer {
                kind: CallFailure::ProtocolError,
                message: String::new(),
            },
            "protocol_error",
            false,
        ),
    ];
    let cases: Vec<(AnswerOutcome, &str, bool)> = cases
        .into_iter()
        .chain([(AnswerOutcome::invalid("a", "b"), "invalid_answer", true)])
        .collect();
    for (o, kind, charged) in cases {
        assert_eq!(o.kind(), kind);
        assert_eq!(o.is_miners(), charged, "{kind}");
        assert_eq!(serde_json::to_value(&o).unwrap()["kind"], kind);
    }
    assert_eq!(
        AnswerOutcome::Evaluated(Outcome::Resolved),
        Outcome::Resolved
    );
    assert_ne!(
        AnswerOutcome::NoAnswer {
            kind: CallFailure::Timeout,
            message: String::new()
        },
        Outcome::Resolved
    );
}

#[test]
fn averages_move_by_alpha_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scores.json");
    let mut s = Scores::load(&path);
    s.update("a", 1.0);
    s.update("a", 1.0);
    s.update("b", 0.0);
    s.health_of("b").malformed += 1;
    assert!((s.by_hotkey["a"] - 0.19).abs() < 1e-12);
    s.save().unwrap();
    let back = Scores::load(&path);
    assert_eq!(back.by_hotkey, s.by_hotkey);
    assert_eq!(back.health["b"].malformed, 1);
    assert!(!path.with_extension("json.partial").exists());
    let mg = Metagraph {
        netuid: 62,
        neurons: ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, h)| Neuron {
                uid: i as u16,
                hotkey: (*h).into(),
                coldkey: String::new(),
                stake: 0.0,
                ip: String::new(),
                port: 0,
                validator_permit: false,
            })
            .collect(),
    };
    let (uids, weights) = back.weights(&mg);
    assert_eq!(uids, [0, 1, 2]);
    assert_eq!(weights, [0.19f32, 0.0, 0.0]);
}

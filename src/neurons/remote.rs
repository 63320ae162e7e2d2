//! Which kinds of task a validator sends to miners on other machines (`--remote-task-kinds`).
//!
//! A forged task's starting tree is a public release plus the bug, and a closed issue's fix is
//! merged in public: a miner holding either can return the answer without any agent (diff the
//! tree against the release; fetch the fix). Such tasks are `public-answer`. On `finney`, `test`
//! or any other real chain the default sends only tasks without a public answer (`none`); on
//! the local chain, where miner and validator are the operator's own, everything goes.

use std::collections::BTreeSet;

use crate::config::Network;
use crate::tasks::{Exposure, Task};

/// The kinds of task sent to remote miners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKinds(BTreeSet<&'static str>);

impl RemoteKinds {
    /// A comma-separated list of `public-answer`, `none`, or `all`.
    pub fn parse(text: &str) -> Result<RemoteKinds, String> {
        let mut kinds = BTreeSet::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                kinds.extend([Exposure::PublicAnswer.as_str(), Exposure::None.as_str()]);
                continue;
            }
            let kind = Exposure::parse(part).ok_or_else(|| {
                format!("unknown task kind {part:?}: use public-answer, none or all")
            })?;
            kinds.insert(kind.as_str());
        }
        if kinds.is_empty() {
            return Err("no task kind given: use public-answer, none or all".into());
        }
        Ok(RemoteKinds(kinds))
    }

    /// Everything on the local chain; only tasks without a public answer elsewhere.
    pub fn default_for(network: &Network) -> RemoteKinds {
        match network {
            Network::Local => RemoteKinds::parse("all").expect("valid"),
            Network::Subtensor(_) => RemoteKinds::parse("none").expect("valid"),
        }
    }

    pub fn allows(&self, task: &Task) -> bool {
        self.0.contains(Exposure::of(task).as_str())
    }

    /// The start-up line: what is sent, and why the rest is not.
    pub fn describe(&self) -> String {
        let kinds = self.0.iter().copied().collect::<Vec<_>>().join(", ");
        if self.0.contains(Exposure::PublicAnswer.as_str()) {
            format!("remote task kinds: {kinds}")
        } else {
            format!(
                "remote task kinds: {kinds}; public-answer tasks (forged from public releases, \
                 closed issues) are not sent: a miner could read their answer without solving \
                 them (--remote-task-kinds to change)"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_chains_default_to_tasks_without_a_public_answer() {
        let forged: Task = serde_json::from_value(serde_json::json!({
            "instance_id": "x", "repo": "pypi/x", "patch": "diff --git a/x b/x\n",
            "problem_statement": "s", "FAIL_TO_PASS": [], "PASS_TO_PASS": []
        }))
        .unwrap();
        let mut open_issue = forged.clone();
        open_issue.patch = String::new();
        for network in ["finney", "test", "ws://127.0.0.1:9944"] {
            let kinds = RemoteKinds::default_for(&Network::parse(network).unwrap());
            assert!(!kinds.allows(&forged), "{network}");
            assert!(kinds.allows(&open_issue), "{network}");
            assert!(kinds.describe().contains("not sent"));
        }
        // Exposure as stored wins over what the task holds: a private task with a reference fix
        // goes out as `none`; a task stated `public-answer` stays home even without a patch.
        let mut private = forged.clone();
        private.exposure = Some(Exposure::None);
        let mut stated_public = open_issue.clone();
        stated_public.exposure = Some(Exposure::PublicAnswer);
        let finney = RemoteKinds::default_for(&Network::parse("finney").unwrap());
        assert!(finney.allows(&private) && !finney.allows(&stated_public));
        let local = RemoteKinds::default_for(&Network::Local);
        assert!(local.allows(&forged) && local.allows(&open_issue));
        assert_eq!(RemoteKinds::parse("public-answer,none").unwrap(), local);
        assert!(RemoteKinds::parse("forged").is_err());
        assert!(RemoteKinds::parse("").is_err());
    }
}

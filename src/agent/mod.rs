//! The miner's SWE agent: a model with tools working on a task's repository inside a Docker
//! sandbox (`episode`: the loop, limits, trajectory; `tools`: bash, view, search, str_replace,
//! submit; `text`: the one-command-per-reply protocol for models without tool calling), and
//! outside programs run as agents (`external`), and miners' agent files run behind the
//! model proxy (`code`).
//!
//! Uses `sandbox/` for containers, `llm/` for the model and the task model from `tasks/`.
//! Must not touch the forge, evaluation, scoring or the subnet: the miner (`neurons/`) wires
//! it to the axon.

pub mod code;
pub mod episode;
pub mod external;
pub mod text;
pub mod tools;

pub use episode::{
    Action, AgentConfig, AgentError, Episode, ExitStatus, Protocol, Step, prepare_workspace,
    prepare_workspace_on, repo_diff, solve,
};
pub use external::run_external;

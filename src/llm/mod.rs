//! Language models: the model table (aliases, prices), the OpenAI-compatible chat client with
//! retries, token and dollar accounting and budgets (`client`), the embedded local model
//! server (`local`, its venv through `python/`), the patch judge (`judge`, prompts from
//! `prompts/`) and the writer of an open issue's checklist for that judge (`checklist`). **Only `llm/` imports async-openai.** Must not touch Docker, tasks or the
//! subnet.

pub mod checklist;
pub mod client;
pub mod judge;
pub mod local;
pub mod models;

pub use client::{
    Budget, Completion, DEFAULT_BASE_URL, LlmClient, LlmConfig, LlmError, Message, ToolCall,
    ToolSpec, Usage,
};
pub use models::{EMBEDDED_MODEL, ModelInfo, lookup, resolve_model};

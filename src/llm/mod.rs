//! Language models: the model table (aliases, prices), the OpenAI-compatible chat client with
//! retries, token and dollar accounting and budgets (`client`), the embedded local model
//! server (`local`), and the patch judge (`judge`). **Only `llm/` imports async-openai.**

pub mod client;
pub mod judge;
pub mod local;
pub mod models;

pub use client::{
    Budget, Completion, DEFAULT_BASE_URL, LlmClient, LlmConfig, LlmError, Message, ToolCall,
    ToolSpec, Usage,
};
pub use models::{EMBEDDED_MODEL, ModelInfo, lookup, resolve_model};

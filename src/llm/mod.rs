//! Language models: the model table (aliases, prices), and later the OpenAI-compatible client,
//! cost accounting and the judge. **Only `llm/` imports async-openai.**

pub mod models;

pub use models::{EMBEDDED_MODEL, ModelInfo, lookup, resolve_model};

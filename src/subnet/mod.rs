//! The subnet wire protocol, compatible with the Python Bittensor SDK: wallets and sr25519
//! signing (`wallet`), synapses and their headers (`synapse`; the ones beside the coding task in
//! `exchanges`), the axon server (`axon`), the
//! dendrite client (`dendrite`), and the chain behind a trait with a local backend (`chain`) and a subtensor
//! backend over JSON-RPC (`subtensor`).
//!
//! Knows nothing of Docker, tasks or scoring: neurons put those behind the handlers. Imports
//! nothing of agentao but `config/` (and `prompts/`, `jsonl` if it needs them).

pub mod axon;
pub mod chain;
pub mod dendrite;
pub mod exchanges;
pub mod subtensor;
pub mod synapse;
pub mod wallet;

pub use axon::{
    Axon, AxonConfig, AxonStats, HandlerError, SHUT_DOWN_MID_REQUEST, SHUTTING_DOWN, Serving,
};
pub use chain::{AnyChain, Chain, ChainError, LocalChain, Metagraph, Neuron, normalize_weights};
pub use dendrite::{AxonTarget, CallFailure, CallResult, DEFAULT_MAX_ANSWER_BYTES, Dendrite};
pub use exchanges::{AgentCode, Forecast, TaskBundle};
pub use subtensor::{SubtensorChain, SubtensorConfig};
pub use synapse::{CodingTask, MAX_TRAJECTORY_BYTES, Synapse, SynapseBody, TerminalInfo};
pub use wallet::{Created, Keypair, Wallet, WalletError, ss58_decode, ss58_encode, verify};

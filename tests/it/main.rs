//! Integration tests: the real Docker engine, the real binary, real subprocesses.
//!
//! They need the base image (`agentao image build-base`; `make test` builds it first) and
//! fail, rather than skip, when it is missing.

pub mod adversarial;
mod agent;
mod agents;
mod agents_run;
mod agents_validator;
mod architecture;
mod axon_limits;
mod cerebro;
mod cli;
mod concurrent;
mod dashboard;
mod dataset;
mod ecosystem;
pub mod eval;
mod fetch;
pub mod forge;
mod forge_quality;
mod github;
mod github_open;
mod github_repo;
mod github_server;
mod github_travel;
mod kube_replay;
mod kubernetes;
mod llm;
mod materialize;
mod operator;
mod pool;
pub mod round;
pub mod sandbox;
mod subnet;
mod subtensor;
mod subtensor_cr;
mod support;
mod swarm;
mod travel;
mod unattended;
mod validator;

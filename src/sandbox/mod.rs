//! Docker sandboxes: the engine connection, containers with hard limits, exec, file copy,
//! image builds, and the reaper that guarantees nothing is left behind.
//!
//! This module owns every call to the Docker engine (and to the cluster engines that may run
//! sandboxes instead: a Docker Swarm, Kubernetes); **only `sandbox/` imports bollard**.
//! It knows nothing about tasks, miners or subnets: callers hand it an image name, limits and
//! commands, and get back exit codes, bounded output and files. Its only agentao imports are
//! `config/` (limits) and `python/` (the base image's wheelhouse).
//!
//! Where sandboxes run is a [`SandboxBackend`] (`backend.rs`): the local engine, a swarm
//! (`swarm.rs`, images from a [`Registry`]) or Kubernetes; callers only see [`Sandbox`].
//!
//! Guarantees:
//! - every container carries the labels `agentao.run`, `agentao.owner` and `agentao.deadline`;
//! - a [`Sandbox`] is a guard: dropping it (panic, timeout, Ctrl-C) removes its container;
//! - the container's own PID 1 is `sleep <wall-clock limit>` under `--init` with auto-remove, so
//!   even a killed agentao process leaves a container that stops and removes itself in time;
//! - [`reap_leftovers`] removes containers whose owner process is gone or whose deadline passed;
//! - a warm pool per engine handle ([`Engine::warm`]) keeps started containers ready for the
//!   announced demand, bounded by the sandbox budget, never handing one out twice (a spec's
//!   [`Setup`], `setup.rs`, runs before a container is handed out, pooled or cold); removal
//!   ([`Sandbox::release`]) runs in the background and [`settle`] drains both at exit.

mod backend;
mod base;
mod container;
mod engine;
mod error;
mod exec;
mod image;
mod kubernetes;
mod network;
mod output;
mod pool;
mod reaper;
mod registry;
mod setup;
mod swarm;

pub use backend::{BackendKind, LocalBackend, Placement, SandboxBackend};
pub use base::{
    BASE_REPO, BaseImage, BaseImageOptions, BuildReport, Rebuild, base_image_tag, build_base_image,
    hash_parts, which,
};
pub use container::{Sandbox, SandboxSpec, settle};
pub use engine::{Engine, EngineInfo};
pub use error::SandboxError;
pub use exec::{ExecOutput, ExecRequest, ExecStatus, OutputStream};
pub use image::{ImageSummary, build_image_from_context, list_agentao_images, tar_files};
pub use kubernetes::{DEFAULT_LAUNCH_TIMEOUT, KubeBackend, KubeCluster};
pub use network::Network;
pub use output::BoundedBuf;
pub use pool::{IDLE_MAX, PoolStats};
pub use reaper::{GcReport, gc_images, reap_leftovers, remove_image};
pub use registry::Registry;
pub use setup::Setup;
pub use swarm::{SwarmBackend, SwarmOptions};

pub use crate::config::Limits;

/// Label every agentao container carries; its value is the run id.
pub const LABEL_RUN: &str = "agentao.run";
/// Label naming the process that owns the container: `<boot-id-prefix>:<pid>:<start-ticks>`.
pub const LABEL_OWNER: &str = "agentao.owner";
/// Label with the unix time after which the container may be reaped whatever its owner.
pub const LABEL_DEADLINE: &str = "agentao.deadline";
/// Label on containers the warm pool started (`"1"`); they carry the others too.
pub const LABEL_POOL: &str = "agentao.pool";
/// Label on images agentao built, with the recipe hash.
pub const LABEL_RECIPE: &str = "agentao.recipe";

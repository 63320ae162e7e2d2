//! `agentao subnet …`: wallets, the chain (register on the local one; metagraph and weights on
//! either `--subtensor.network`), and the load generator the axon benchmark runs in a separate
//! process.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Subcommand;
use serde::Serialize;

use super::UserError;
use super::context::{Inclusion, chain, local_chain, wallet};
use super::printer;
use crate::config::{Network, Settings};
use crate::subnet::{AxonTarget, Chain, CodingTask, Dendrite, Neuron, Wallet};

#[derive(Debug, Subcommand)]
pub enum SubnetCmd {
    /// Create the hotkey of --wallet.name/--wallet.hotkey in btcli's layout (mode 0600;
    /// refuses to overwrite); a wallet without a coldkey gets one.
    CreateHotkey,
    /// Print the hotkey's SS58 address.
    Whoami,
    /// Register a neuron on the local chain (`<data dir>/chain/metagraph.json`).
    Register {
        /// SS58 hotkey (default: this wallet's).
        #[arg(long)]
        hotkey: Option<String>,
        #[arg(long, default_value = "127.0.0.1")]
        ip: String,
        #[arg(long, default_value_t = 8091)]
        port: u16,
        #[arg(long, default_value_t = 0.0)]
        stake: f64,
        /// Give it a validator permit.
        #[arg(long)]
        validator: bool,
    },
    /// Print the metagraph (uids, hotkeys, stake, axons, permits) as JSON.
    Metagraph,
    /// Set this wallet's weights on the subnet (normalised to u16 as the SDK does; committed
    /// timelocked to their drand reveal round on commit-reveal subnets).
    #[command(visible_alias = "weights")]
    SetWeights {
        /// Uids, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        uids: Vec<u16>,
        /// Non-negative weights, comma-separated, one per uid.
        #[arg(long, value_delimiter = ',', required = true)]
        weights: Vec<f32>,
        /// Version key (must be at least the subnet's WeightsVersionKey).
        #[arg(long, default_value_t = 0)]
        version_key: u64,
        /// Submit and return without waiting for the weights to land.
        #[arg(long)]
        no_wait: bool,
        /// Print what would be sent and why (the normalised vector, commit-reveal on or off,
        /// the reveal round, the rate-limit wait) and send nothing.
        #[arg(long)]
        explain: bool,
    },
    /// Signed-request load against an axon (used by `bench axon`).
    #[command(hide = true)]
    Load {
        /// Wallets directory holding the loader's hotkey (`load/default`).
        #[arg(long)]
        wallets: PathBuf,
        #[arg(long)]
        port: u16,
        /// The axon's SS58 hotkey.
        #[arg(long)]
        axon_hotkey: String,
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
}

/// What a load run measured.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct LoadReport {
    pub requests: usize,
    pub ok: usize,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub async fn run(cmd: SubnetCmd, settings: &Settings) -> anyhow::Result<()> {
    match cmd {
        SubnetCmd::CreateHotkey => {
            let w = wallet(settings);
            let made = w.create()?;
            if made.new_coldkey {
                printer::status(format_args!(
                    "new coldkey {} written unencrypted to {} (mode 0600)",
                    made.coldkey,
                    w.coldkey_path().display()
                ));
                printer::hint(
                    "the coldkey owns the stake and a neuron never needs it: keep its secretPhrase offline and delete the file, or re-create it encrypted with `btcli wallet regen-coldkey`",
                );
            }
            printer::status(format_args!(
                "hotkey {} of coldkey {}",
                made.hotkey.ss58(),
                made.coldkey
            ));
            printer::data(made.hotkey.ss58());
        }
        SubnetCmd::Whoami => printer::data(wallet(settings).load_hotkey()?.ss58()),
        SubnetCmd::Register {
            hotkey,
            ip,
            port,
            stake,
            validator,
        } => {
            if settings.network != Network::Local {
                return Err(UserError::new("registration on a subtensor network is not done here")
                    .hint("register with btcli (`btcli subnet register`); agentao reads the result from the chain")
                    .into());
            }
            let hotkey = match hotkey {
                Some(h) => {
                    crate::subnet::ss58_decode(&h)?;
                    h
                }
                None => wallet(settings).load_hotkey()?.ss58(),
            };
            let uid = local_chain(settings).register(Neuron {
                uid: 0,
                hotkey: hotkey.clone(),
                coldkey: String::new(),
                stake,
                ip,
                port,
                validator_permit: validator,
            })?;
            printer::data(serde_json::json!({"uid": uid, "hotkey": hotkey}));
        }
        SubnetCmd::Metagraph => {
            let mg = chain(settings, None, Inclusion::Submit)?
                .metagraph()
                .await?;
            printer::data(serde_json::to_string_pretty(&mg)?);
        }
        SubnetCmd::SetWeights {
            uids,
            weights,
            version_key,
            no_wait,
            explain,
        } => {
            let key = wallet(settings).load_hotkey()?;
            let hotkey = key.ss58();
            if explain {
                let plan = chain(settings, None, Inclusion::Submit)?
                    .explain_weights(&hotkey, &uids, &weights, version_key)
                    .await?;
                printer::data(serde_json::to_string_pretty(&plan)?);
                return Ok(());
            }
            let inclusion = if no_wait {
                Inclusion::Submit
            } else {
                Inclusion::Wait
            };
            chain(settings, Some(key), inclusion)?
                .set_weights(&hotkey, &uids, &weights, version_key)
                .await?;
            let (uids, weights) = crate::subnet::normalize_weights(&uids, &weights)?;
            printer::data(
                serde_json::json!({"hotkey": hotkey, "netuid": settings.netuid, "uids": uids, "weights": weights}),
            );
        }
        SubnetCmd::Load {
            wallets,
            port,
            axon_hotkey,
            requests,
            concurrency,
        } => {
            let report = load(&wallets, port, &axon_hotkey, requests, concurrency).await?;
            printer::data(serde_json::to_string(&report)?);
        }
    }
    Ok(())
}

async fn load(
    wallets: &std::path::Path,
    port: u16,
    axon_hotkey: &str,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<LoadReport> {
    let key = Wallet::new(wallets, "load", "default").load_hotkey()?;
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: axon_hotkey.to_owned(),
    };
    let task = CodingTask {
        repo: "pypi/bench".into(),
        problem_statement: "benchmark".into(),
        ..CodingTask::default()
    };
    // One dendrite (its own uuid) per worker, each sending in sequence: nonces only have to
    // grow per (hotkey, uuid), so concurrent workers never trip the replay check.
    let workers = concurrency.max(1).min(requests.max(1));
    let started = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let n = requests / workers + usize::from(w < requests % workers);
        let (d, t, task) = (Dendrite::new(key.clone()), target.clone(), task.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(n);
            for _ in 0..n {
                let r = d.call(&t, task.clone(), Duration::from_secs(30)).await;
                if r.status_code == 200 {
                    lat.push(r.latency_s);
                }
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map_or(0.0, |s| s * 1000.0)
    };
    Ok(LoadReport {
        requests,
        ok: latencies.len(),
        seconds,
        requests_per_second: latencies.len() as f64 / seconds,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
    })
}

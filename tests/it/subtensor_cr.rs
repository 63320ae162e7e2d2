//! Commit-reveal weights (version 4) against the Python SDK, bittensor 10.5.0 with its
//! `bittensor-drand` 2.0.0, on finney's recorded metadata (`tests/fixtures/subtensor`).
//!
//! - Our commit extrinsic equals the SDK's rebuild of the same call byte for byte, and our
//!   signature verifies over the SDK's payload.
//! - The SDK's own `commit_timelocked_weights_extrinsic`, run on the same schedule, commits to
//!   the same drand round; `bittensor-drand` opens its commit and ours with quicknet's published
//!   signature of that round, and the two plaintexts are equal to each other and to our payload.
//! - Our reveal rounds equal `bittensor-drand`'s for epoch states of the newer runtimes.
//! - The wait sees the commit stored; `subnet weights --explain` says what would be sent.
//!
//! The SDK reads its clock inside `bittensor-drand`; the commit test picks the block time that
//! lands it on round 1000, whose signature drand published (a past round, so the ciphertexts can
//! be opened here).

use agentao::subnet::subtensor::drand::{self, WeightsPayload};
use agentao::subnet::subtensor::epoch::{self, EpochState, Schedule};
use agentao::subnet::subtensor::{Clock, SubtensorChain, SubtensorConfig};
use agentao::subnet::{Chain, ChainError, Keypair};
use parity_scale_codec::{Compact, Decode, Encode};
use serde_json::{Value, json};

use crate::subtensor::{
    CURRENT, DEV_PHRASE, Fate, METADATA, NETUID, hex, node, sdk, sdk_keys, sdk_rebuilds,
};

/// Quicknet's pulse for round 1000 (https://api.drand.sh/52db9ba7…/public/1000).
const ROUND: u64 = 1000;
const SIGNATURE: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";
const TEMPO: u16 = 360;
const PERIOD: u64 = 1;

/// The commit and reveal round a `commit_timelocked_mechanism_weights` extrinsic carries: the
/// call is the extrinsic's tail, `… 118 netuid mecid compact(len) commit round version`.
pub fn commit_in(extrinsic: &str) -> (Vec<u8>, u64, [u8; 32]) {
    let x = ::hex::decode(extrinsic.trim_start_matches("0x")).unwrap();
    let end = x.len() - 10;
    let round = u64::from_le_bytes(x[end..end + 8].try_into().unwrap());
    for start in (4..end).rev() {
        let mut at = &x[start..end];
        let Ok(Compact(len)) = Compact::<u32>::decode(&mut at) else {
            continue;
        };
        if at.len() == len as usize && len > 64 && x[start - 4] == 118 {
            // compact length, version byte 0x84, MultiAddress::Id: the signer follows.
            let prefix = Compact::<u32>::decode(&mut &x[..]).unwrap().encoded_size();
            let who: [u8; 32] = x[prefix + 2..prefix + 34].try_into().unwrap();
            return (at.to_vec(), round, who);
        }
    }
    panic!("no timelocked commit in {extrinsic}");
}

/// What the scripted node stores when a commit lands: the queue of one entry.
pub fn stored_commit(extrinsic: &str) -> String {
    let (commit, round, who) = commit_in(extrinsic);
    hex(&vec![(who, CURRENT + 1, commit, round)].encode())
}

/// The clock at which our reveal round for `reveal_block` is `ROUND` (mid-round).
fn clock_for_round(reveal_block: u64) -> f64 {
    let blocks = reveal_block + drand::SECURITY_BLOCKS - CURRENT;
    drand::round_time(ROUND) as f64 + 1.5 - blocks as f64 * 12.0
}

fn cr_chain(url: &str, signer: Keypair, mechid: u8, wait: bool, clock: Clock) -> SubtensorChain {
    let mut config = SubtensorConfig::new(url, NETUID);
    config.wait = wait;
    config.period = 4;
    config.block_time = std::time::Duration::from_millis(20);
    config.mechid = mechid;
    config.clock = clock;
    SubtensorChain::new(config, Some(signer)).unwrap()
}

/// A node with commit-reveal on (tempo 360, reveal period 1) at the keys the SDK computes.
async fn cr_node(
    keys: &Value,
    fate: Fate,
) -> (
    crate::support::TestServer,
    std::sync::Arc<std::sync::Mutex<crate::subtensor::NodeState>>,
) {
    let (server, state) = node(keys, fate).await;
    let key = |name: &str| keys[name].as_str().unwrap().to_owned();
    let mut st = state.lock().unwrap();
    st.storage
        .insert(key("CommitRevealWeightsEnabled"), hex(&true.encode()));
    st.storage.insert(key("Tempo"), hex(&TEMPO.encode()));
    st.storage
        .insert(key("RevealPeriodEpochs"), hex(&PERIOD.encode()));
    drop(st);
    (server, state)
}

#[tokio::test]
async fn a_commit_reveal_subnet_gets_the_sdks_timelocked_commit() {
    let signer = Keypair::from_phrase(DEV_PHRASE).unwrap();
    let hotkey = signer.ss58();
    let keys = sdk_keys(&hotkey).await;
    let (server, state) = cr_node(&keys, Fate::Lands).await;
    // finney's recorded runtime numbers epochs by the fixed formula.
    let fixed = Schedule::Fixed {
        netuid: NETUID,
        tempo: TEMPO,
        current_block: CURRENT,
    };
    let (_, reveal_block) = epoch::reveal_block(&fixed, NETUID, PERIOD).unwrap();
    let clock = Clock::Fixed(clock_for_round(reveal_block));
    let (uids, weights) = ([0u16, 1, 2, 3], [0.1f32, 0.2, 0.0, 0.7]);

    let chain = cr_chain(&server.url, signer.clone(), 0, false, clock);
    let plan = chain
        .explain_weights(&hotkey, &uids, &weights, 7)
        .await
        .unwrap();
    let reveal = plan.commit_reveal.clone().expect("commit-reveal is on");
    assert_eq!(
        (reveal.reveal_block, reveal.reveal_round),
        (reveal_block, ROUND)
    );
    chain
        .set_weights(&hotkey, &uids, &weights, 7)
        .await
        .unwrap();
    let submitted = state.lock().unwrap().submitted.clone();
    assert_eq!(submitted.len(), 1);
    let (commit, round, who) = commit_in(&submitted[0]);
    assert_eq!((round, who), (ROUND, signer.public()));

    // The extrinsic, byte for byte.
    let args = json!({"netuid": NETUID, "mecid": 0, "commit": hex(&commit),
                      "reveal_round": ROUND, "commit_reveal_version": 4});
    let d = sdk_rebuilds(
        &hotkey,
        &submitted[0],
        "commit_timelocked_mechanism_weights",
        args,
    )
    .await;
    assert_eq!(d["call_args"]["reveal_round"], ROUND);
    assert_eq!(d["call_args"]["commit_reveal_version"], 4);

    // The SDK's own commit path on the same schedule (the reference simulator fed the fixed
    // schedule as state), landing on the same round only if it predicts the same reveal block.
    let state_ = epoch::fixed_as_state(NETUID, TEMPO, CURRENT);
    let theirs = sdk(json!({
        "op": "commit", "metadata": METADATA, "state": state_, "reveal_period": PERIOD,
        "phrase": DEV_PHRASE, "netuid": NETUID, "mechid": 0, "uids": uids, "weights": weights,
        "version_key": 7, "target_round": ROUND,
        "blocks_until_ingest": reveal_block + drand::SECURITY_BLOCKS - CURRENT,
        "signature": SIGNATURE, "our_commit": hex(&commit),
    }))
    .await;
    assert_eq!(
        theirs["call_function"],
        "commit_timelocked_mechanism_weights"
    );
    assert_eq!(theirs["reveal_round"], ROUND, "{theirs}");
    assert_eq!(theirs["netuid"], NETUID);
    assert_eq!(theirs["mecid"], 0);
    assert_eq!(theirs["commit_reveal_version"], 4);
    let ours = WeightsPayload {
        hotkey: signer.public().to_vec(),
        uids: vec![0, 1, 3],
        values: vec![9362, 18724, 65535],
        version_key: 7,
    };
    assert_eq!(theirs["our_plaintext"], hex(&ours.encode()), "{theirs}");
    assert_eq!(theirs["sdk_plaintext"], theirs["our_plaintext"], "{theirs}");
}

#[tokio::test]
async fn reveal_rounds_match_bittensor_drand() {
    let mut cases = vec![
        EpochState {
            last_epoch_block: 100,
            pending_epoch_at: 0,
            subnet_epoch_index: 7,
            tempo: 50,
            blocks_since_last_step: 20,
            current_block: 120,
        },
        EpochState {
            last_epoch_block: 3_999_900,
            pending_epoch_at: 4_000_010,
            subnet_epoch_index: 11_000,
            tempo: 360,
            blocks_since_last_step: 100,
            current_block: CURRENT,
        },
        EpochState {
            last_epoch_block: 1_000,
            pending_epoch_at: 0,
            subnet_epoch_index: 3,
            tempo: 99,
            blocks_since_last_step: 60_000,
            current_block: 1_050,
        },
    ];
    cases.extend(
        [(0, 1, 5_000), (62, 360, CURRENT), (4095, 99, 77_777)]
            .map(|(netuid, tempo, block)| epoch::fixed_as_state(netuid, tempo, block)),
    );
    for (i, state) in cases.iter().enumerate() {
        let period = 1 + i as u64 % 3;
        let answer = sdk(json!({"op": "reveal_round", "state": state,
                                "reveal_period": period, "block_time": 12.0}))
        .await;
        let (_, block) = epoch::reveal_block(&Schedule::Stateful(*state), 1, period).unwrap();
        let ours =
            |t: &Value| drand::reveal_round(block, state.current_block, 12.0, t.as_f64().unwrap());
        let round = answer["round"].as_u64().unwrap();
        assert!(
            round == ours(&answer["before"]) || round == ours(&answer["after"]),
            "{state:?} period {period}: theirs {round}, ours {}",
            ours(&answer["before"])
        );
    }
}

#[tokio::test]
async fn mechanisms_and_the_wait_for_a_stored_commit() {
    let signer = Keypair::from_phrase(DEV_PHRASE).unwrap();
    let hotkey = signer.ss58();
    let keys = sdk_keys(&hotkey).await;

    // Mechanism 1 in the clear: the SDK's set_mechanism_weights; its LastUpdate row lives at
    // the mechanism's storage index (1 * 4096 + netuid).
    let (server, state) = node(&keys, Fate::Lands).await;
    let mech_keys = sdk(json!({"op": "keys", "metadata": METADATA, "netuid": NETUID,
        "hotkey": hotkey, "extra": {"LastUpdate": [4096 + NETUID]}}))
    .await;
    let mech_last_update = mech_keys["LastUpdate"].as_str().unwrap().to_owned();
    assert_ne!(mech_last_update, keys["LastUpdate"].as_str().unwrap());
    let clear = cr_chain(&server.url, signer.clone(), 1, false, Clock::System);
    // The mechanism's own row rate-limits it (40 blocks ago, limit 100).
    let row = crate::subtensor::last_update(CURRENT - 40);
    state
        .lock()
        .unwrap()
        .storage
        .insert(mech_last_update.clone(), row);
    let err = clear
        .set_weights(&hotkey, &[0, 1], &[1.0, 3.0], 2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChainError::RateLimited { blocks_left: 61 }),
        "{err}"
    );
    state.lock().unwrap().storage.remove(&mech_last_update);
    clear
        .set_weights(&hotkey, &[0, 1], &[1.0, 3.0], 2)
        .await
        .unwrap();
    let submitted = state.lock().unwrap().submitted.clone();
    let args = json!({"netuid": NETUID, "mecid": 1, "dests": [0, 1], "weights": [21845, 65535],
                      "version_key": 2});
    sdk_rebuilds(&hotkey, &submitted[0], "set_mechanism_weights", args).await;

    // A commit that lands is seen in TimelockedWeightCommits; one that fails on chain is not.
    let fixed = Schedule::Fixed {
        netuid: NETUID,
        tempo: TEMPO,
        current_block: CURRENT,
    };
    let (commit_epoch, _) = epoch::reveal_block(&fixed, NETUID, PERIOD).unwrap();
    let commit_keys = sdk(json!({"op": "keys", "metadata": METADATA, "netuid": NETUID,
        "hotkey": hotkey, "extra": {"TimelockedWeightCommits": [NETUID, commit_epoch]}}))
    .await;
    for (fate, ok) in [(Fate::Lands, true), (Fate::Fails, false)] {
        let (server, state) = cr_node(&keys, fate).await;
        state.lock().unwrap().commit_key = Some(
            commit_keys["TimelockedWeightCommits"]
                .as_str()
                .unwrap()
                .into(),
        );
        let chain = cr_chain(&server.url, signer.clone(), 0, true, Clock::System);
        let result = chain.set_weights(&hotkey, &[0, 1], &[1.0, 1.0], 0).await;
        assert_eq!(result.is_ok(), ok, "{result:?}");
        if !ok {
            assert!(
                matches!(result, Err(ChainError::DispatchFailed(_))),
                "{result:?}"
            );
        }
    }
}

// The CLI runs as a blocking subprocess: the scripted node needs a worker of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subnet_weights_explain_says_what_would_be_sent() {
    let wallets = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let agentao = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_agentao"))
            .args(args)
            .env("AGENTAO_WALLET_PATH", wallets.path())
            .env("AGENTAO_DATA_DIR", data.path())
            .env_remove("AGENTAO_SUBTENSOR_NETWORK")
            .output()
            .unwrap()
    };
    let created = agentao(&["subnet", "create-hotkey"]);
    assert!(created.status.success(), "{created:?}");
    let hotkey = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let keys = sdk_keys(&hotkey).await;
    let (server, state) = cr_node(&keys, Fate::Lands).await;
    let limit = keys["WeightsSetRateLimit"].as_str().unwrap().to_owned();
    state
        .lock()
        .unwrap()
        .storage
        .insert(limit, hex(&500u64.encode()));
    let explain = [
        "subnet",
        "weights",
        "--explain",
        "--uids",
        "0,1",
        "--weights",
        "0.25,0.75",
        "--subtensor.network",
        &server.url,
    ];
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let before = now();
    let out = agentao(&explain);
    let after = now();
    assert!(out.status.success(), "{out:?}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["uids"], json!([0, 1]));
    assert_eq!(plan["weights"], json!([21845, 65535]));
    assert_eq!(plan["uid"], 3);
    // Last update 200 blocks ago, limit 500: 301 more blocks.
    assert_eq!(plan["rate_limit_wait_blocks"], 301);
    let cr = &plan["commit_reveal"];
    let fixed = Schedule::Fixed {
        netuid: NETUID,
        tempo: TEMPO,
        current_block: CURRENT,
    };
    let (epoch_, block) = epoch::reveal_block(&fixed, NETUID, PERIOD).unwrap();
    assert_eq!(cr["schedule"]["model"], "fixed");
    assert_eq!(cr["commit_epoch"], epoch_);
    assert_eq!(cr["reveal_block"], block);
    assert_eq!(cr["commit_reveal_version"], 4);
    let round = cr["reveal_round"].as_u64().unwrap();
    let at = |t| drand::reveal_round(block, CURRENT, 12.0, t);
    assert!((at(before)..=at(after)).contains(&round), "{cr}");
    assert_eq!(cr["reveal_round_time"], drand::round_time(round));
    assert!(
        state.lock().unwrap().submitted.is_empty(),
        "--explain sends nothing"
    );

    // Mechanism 1 has its own LastUpdate row (empty here): no wait.
    let out = agentao(&[&explain[..], &["--mechid", "1"]].concat());
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["mechid"], 1);
    assert_eq!(plan["rate_limit_wait_blocks"], 0);

    // Commit-reveal off: the plan says so.
    let key = keys["CommitRevealWeightsEnabled"]
        .as_str()
        .unwrap()
        .to_owned();
    state
        .lock()
        .unwrap()
        .storage
        .insert(key, hex(&false.encode()));
    let out = agentao(&explain);
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["commit_reveal"], Value::Null);
    assert_eq!(plan["rate_limit_wait_blocks"], 301);

    // The local chain: the vector, no commit-reveal, and no uid until registered.
    let out = agentao(&explain[..7]);
    assert!(out.status.success(), "{out:?}");
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["weights"], json!([21845, 65535]));
    assert_eq!(plan["uid"], Value::Null);
    assert_eq!(plan["commit_reveal"], Value::Null);
}

//! The `subtensor` chain backend against a scripted JSON-RPC node that serves finney's runtime
//! metadata (V14, `tests/fixtures/subtensor`), checked by the real Python SDK (bittensor 10.5.0 in
//! a venv, `subtensor_sdk.py`): the storage keys the node answers are the ones the SDK computes,
//! our `set_weights` extrinsic equals the SDK's byte for byte and our signature verifies over the
//! SDK's signing payload, and the metagraph decodes as the SDK's `bt_decode` reads it. Then the
//! refusals (unregistered, commit-reveal without epochs, rate limit, version key, signer, node errors) and the
//! wait for the weights to land.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentao::subnet::subtensor::neurons::{AxonInfo, NeuronInfoLite, PrometheusInfo};
use agentao::subnet::{Chain, ChainError, Keypair, SubtensorChain, SubtensorConfig};
use parity_scale_codec::{Compact, Encode};
use serde_json::{Value, json};

use crate::support::{Response, TestServer, bittensor};

pub(crate) const METADATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/subtensor/finney-metadata-v14.scale.gz"
);
pub(crate) const SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/subtensor_sdk.py");
pub(crate) const DEV_PHRASE: &str =
    "bottom drive obey lake curtain smoke basket hold race lonely fit walk";
pub(crate) const NETUID: u16 = 62;
pub(crate) const CURRENT: u64 = 4_000_000;
pub(crate) const SPEC: u32 = 320;
pub(crate) const GENESIS: &str =
    "0x2f0555cc76fc2840a25a6ea3b9637146806f1f44b090c175ffde2a7e5ab36c03";
pub(crate) const HEAD: &str = "0x5d1fbfbe852f28077f6bb2b9f5e7bd1a3a9f1c7c4e1f2ab3c4d5e6f708192a3b";
pub(crate) const UID: u16 = 3;

/// Runs one request through the SDK helper.
pub(crate) async fn sdk(request: Value) -> Value {
    let python = bittensor().await;
    let mut child = Command::new(python)
        .arg(SDK)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    format!("0x{}", ::hex::encode(bytes))
}

/// What happens to a submitted extrinsic.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Fate {
    /// Included, and the weights change (`LastUpdate` moves).
    Lands,
    /// Included, but the call fails (only the nonce moves).
    Fails,
    /// Never included.
    Lost,
}

/// The node's state: storage by key, the account nonce, submissions.
pub(crate) struct NodeState {
    pub(crate) storage: HashMap<String, String>,
    pub(crate) nonce: u32,
    pub(crate) submitted: Vec<String>,
    pub(crate) fate: Fate,
    pub(crate) last_update_key: String,
    pub(crate) neurons: String,
    /// Where a landed timelocked commit is stored (the SDK's `TimelockedWeightCommits` key);
    /// `None`: submissions are weights in the clear and move `LastUpdate`.
    pub(crate) commit_key: Option<String>,
    /// Methods that answer with a JSON-RPC error.
    pub(crate) broken: Vec<&'static str>,
}

pub(crate) fn last_update(at: u64) -> String {
    let mut v = vec![0u64; 5];
    v[UID as usize] = at;
    hex(&v.encode())
}

/// A node whose storage answers only at the keys the SDK computes.
pub(crate) async fn node(keys: &Value, fate: Fate) -> (TestServer, Arc<Mutex<NodeState>>) {
    let key = |name: &str| keys[name].as_str().unwrap().to_owned();
    let storage = HashMap::from([
        (key("Uids"), hex(&UID.encode())),
        (key("LastUpdate"), last_update(CURRENT - 200)),
        (key("WeightsSetRateLimit"), hex(&100u64.encode())),
        (key("CommitRevealWeightsEnabled"), hex(&false.encode())),
        (key("WeightsVersionKey"), hex(&0u64.encode())),
    ]);
    let state = Arc::new(Mutex::new(NodeState {
        storage,
        nonce: 5,
        submitted: Vec::new(),
        fate,
        last_update_key: key("LastUpdate"),
        neurons: "0x00".into(),
        commit_key: None,
        broken: Vec::new(),
    }));
    let metadata = {
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(METADATA).unwrap()),
            &mut raw,
        )
        .unwrap();
        hex(&raw)
    };
    let shared = state.clone();
    let server = TestServer::start(move |req| {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let method = body["method"].as_str().unwrap_or("");
        let params = &body["params"];
        let mut st = shared.lock().unwrap();
        let result = if st.broken.contains(&method) {
            None
        } else {
            match method {
                "chain_getFinalizedHead" => Some(json!(HEAD)),
                "chain_getHeader" => Some(json!({"number": format!("0x{CURRENT:x}")})),
                "chain_getBlockHash" if params[0] == 0 => Some(json!(GENESIS)),
                "state_getRuntimeVersion" => {
                    Some(json!({"specVersion": SPEC, "transactionVersion": 1}))
                }
                "state_getMetadata" => Some(json!(metadata)),
                "state_getStorage" => Some(
                    st.storage
                        .get(params[0].as_str().unwrap())
                        .map_or(Value::Null, |v| json!(v)),
                ),
                "system_accountNextIndex" => Some(json!(st.nonce)),
                "state_call" if params[0] == "NeuronInfoRuntimeApi_get_neurons_lite" => {
                    Some(json!(st.neurons))
                }
                "author_submitExtrinsic" => {
                    st.submitted.push(params[0].as_str().unwrap().to_owned());
                    if st.fate != Fate::Lost {
                        st.nonce += 1;
                    }
                    if st.fate == Fate::Lands {
                        let xt = params[0].as_str().unwrap().to_owned();
                        let (k, v) = match st.commit_key.clone() {
                            Some(k) => (k, crate::subtensor_cr::stored_commit(&xt)),
                            None => (st.last_update_key.clone(), last_update(CURRENT + 1)),
                        };
                        st.storage.insert(k, v);
                    }
                    Some(json!(format!("0x{}", "ab".repeat(32))))
                }
                _ => None,
            }
        };
        let answer = match result {
            Some(r) => json!({"jsonrpc": "2.0", "id": body["id"], "result": r}),
            None => json!({"jsonrpc": "2.0", "id": body["id"],
                "error": {"code": -32601, "message": "Method not found"}}),
        };
        Response::new(200, "application/json", answer.to_string())
    })
    .await;
    (server, state)
}

pub(crate) fn chain(url: &str, signer: Option<Keypair>, wait: bool) -> SubtensorChain {
    let mut config = SubtensorConfig::new(url, NETUID);
    config.wait = wait;
    config.period = 4;
    config.block_time = Duration::from_millis(20);
    SubtensorChain::new(config, signer).unwrap()
}

pub(crate) async fn sdk_keys(hotkey: &str) -> Value {
    let extra = json!({"Tempo": [NETUID], "RevealPeriodEpochs": [NETUID]});
    sdk(
        json!({"op": "keys", "metadata": METADATA, "netuid": NETUID, "hotkey": hotkey,
               "extra": extra}),
    )
    .await
}

/// The SDK's rebuild of `extrinsic` (our submission: nonce 5, mortal for 4 blocks from the
/// node's head) as `SubtensorModule::call(args)` with our signature; checks that the bytes are
/// equal and our signature verifies over the SDK's payload, and returns its decoding.
pub(crate) async fn sdk_rebuilds(hotkey: &str, extrinsic: &str, call: &str, args: Value) -> Value {
    let answer = sdk(json!({
        "op": "extrinsic", "metadata": METADATA, "spec_version": SPEC, "transaction_version": 1,
        "genesis_hash": GENESIS, "birth_hash": HEAD, "current": CURRENT, "period": 4,
        "nonce": 5, "hotkey": hotkey, "extrinsic": extrinsic,
        "call_function": call, "call_args": args,
    }))
    .await;
    assert_eq!(answer["sdk_extrinsic"], extrinsic, "{answer}");
    assert_eq!(answer["signature_verifies"], true, "{answer}");
    let decoded = answer["decoded"].clone();
    assert_eq!(decoded["call_module"], "SubtensorModule");
    assert_eq!(decoded["call_function"], call);
    decoded
}

#[tokio::test]
async fn set_weights_matches_the_python_sdk_byte_for_byte() {
    let signer = Keypair::from_phrase(DEV_PHRASE).unwrap();
    let hotkey = signer.ss58();
    let keys = sdk_keys(&hotkey).await;
    let (server, state) = node(&keys, Fate::Lands).await;
    let chain = chain(&server.url, Some(signer), false);
    chain
        .set_weights(&hotkey, &[0, 1, 2, 3], &[0.1, 0.2, 0.0, 0.7], 7)
        .await
        .unwrap();
    let submitted = state.lock().unwrap().submitted.clone();
    assert_eq!(submitted.len(), 1);

    let args = json!({"netuid": NETUID, "dests": [0, 1, 3], "weights": [9362, 18724, 65535],
                      "version_key": 7});
    let d = &sdk_rebuilds(&hotkey, &submitted[0], "set_weights", args).await;
    assert_eq!(d["call_args"]["netuid"], NETUID);
    assert_eq!(d["call_args"]["dests"], json!([0, 1, 3]));
    assert_eq!(d["call_args"]["weights"], json!([9362, 18724, 65535]));
    assert_eq!(d["call_args"]["version_key"], 7);
    assert_eq!(d["nonce"], 5);
    assert_eq!(d["tip"], 0);
    assert_eq!(d["address"], hotkey);
    // Mortal for 4 blocks from the finalized head.
    assert_eq!(d["era"], json!([4, CURRENT % 4]), "{d}");
}

#[tokio::test]
async fn serve_axon_matches_the_python_sdk_byte_for_byte() {
    let signer = Keypair::from_phrase(DEV_PHRASE).unwrap();
    let hotkey = signer.ss58();
    let keys = sdk_keys(&hotkey).await;
    let (server, state) = node(&keys, Fate::Lands).await;
    let ip = std::net::Ipv4Addr::new(203, 0, 113, 7);
    chain(&server.url, Some(signer), false)
        .serve_axon(&hotkey, ip.into(), 8091)
        .await
        .unwrap();
    let submitted = state.lock().unwrap().submitted.clone();
    assert_eq!(submitted.len(), 1);
    let args = json!({"netuid": NETUID, "version": 10_005_000, "ip": u32::from(ip), "port": 8091,
                      "ip_type": 4, "protocol": 4, "placeholder1": 0, "placeholder2": 0});
    let d = &sdk_rebuilds(&hotkey, &submitted[0], "serve_axon", args).await;
    assert_eq!(d["call_args"]["ip"], u32::from(ip));
    assert_eq!(d["call_args"]["port"], 8091);
}

#[tokio::test]
async fn set_weights_waits_until_the_weights_land() {
    let signer = Keypair::from_phrase(DEV_PHRASE).unwrap();
    let hotkey = signer.ss58();
    let keys = sdk_keys(&hotkey).await;

    let (server, _) = node(&keys, Fate::Lands).await;
    chain(&server.url, Some(signer.clone()), true)
        .set_weights(&hotkey, &[0, 1], &[1.0, 1.0], 0)
        .await
        .unwrap();

    let (server, state) = node(&keys, Fate::Fails).await;
    let err = chain(&server.url, Some(signer.clone()), true)
        .set_weights(&hotkey, &[0, 1], &[1.0, 1.0], 0)
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::DispatchFailed(_)), "{err}");
    assert_eq!(state.lock().unwrap().submitted.len(), 1);

    let (server, _) = node(&keys, Fate::Lost).await;
    let err = chain(&server.url, Some(signer), true)
        .set_weights(&hotkey, &[0, 1], &[1.0, 1.0], 0)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChainError::NotIncluded { blocks: 4, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn set_weights_refuses_what_the_chain_would_refuse() {
    let signer = Keypair::from_phrase(DEV_PHRASE).unwrap();
    let hotkey = signer.ss58();
    let keys = sdk_keys(&hotkey).await;
    let key = |name: &str| keys[name].as_str().unwrap().to_owned();
    let (server, state) = node(&keys, Fate::Lands).await;
    let chain_ = chain(&server.url, Some(signer.clone()), false);
    let try_set = || chain_.set_weights(&hotkey, &[0, 1], &[1.0, 2.0], 3);

    let set = |k: String, v: String| state.lock().unwrap().storage.insert(k, v);
    // Commit-reveal is no refusal (`subtensor_cr`), but a subnet without epochs would never
    // reveal the commit.
    set(key("CommitRevealWeightsEnabled"), hex(&true.encode()));
    set(key("Tempo"), hex(&0u16.encode()));
    let err = try_set().await.unwrap_err();
    assert!(matches!(err, ChainError::NoEpochs(NETUID)), "{err}");
    state.lock().unwrap().storage.remove(&key("Tempo"));
    set(key("CommitRevealWeightsEnabled"), hex(&false.encode()));

    set(key("WeightsVersionKey"), hex(&10u64.encode()));
    let err = try_set().await.unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::VersionKey {
                ours: 3,
                required: 10
            }
        ),
        "{err}"
    );
    set(key("WeightsVersionKey"), hex(&0u64.encode()));

    // Last update 40 blocks ago, limit 100: 61 more blocks until `since > limit`.
    set(key("LastUpdate"), last_update(CURRENT - 40));
    let err = try_set().await.unwrap_err();
    assert!(
        matches!(err, ChainError::RateLimited { blocks_left: 61 }),
        "{err}"
    );
    set(key("LastUpdate"), last_update(CURRENT - 200));

    let removed = state.lock().unwrap().storage.remove(&key("Uids")).unwrap();
    let err = try_set().await.unwrap_err();
    assert!(
        matches!(err, ChainError::NotRegistered { netuid: NETUID, .. }),
        "{err}"
    );
    set(key("Uids"), removed);

    let other = Keypair::generate().0;
    let err = chain(&server.url, Some(other), false)
        .set_weights(&hotkey, &[0], &[1.0], 3)
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::WrongSigner { .. }), "{err}");
    let err = chain(&server.url, None, false)
        .set_weights(&hotkey, &[0], &[1.0], 3)
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::NoSigner), "{err}");

    state.lock().unwrap().broken.push("system_accountNextIndex");
    let err = try_set().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("system_accountNextIndex: Method not found"),
        "{err}"
    );
    assert!(state.lock().unwrap().submitted.is_empty());
    state.lock().unwrap().broken.clear();

    // With everything in order the same call goes through.
    try_set().await.unwrap();
    assert_eq!(state.lock().unwrap().submitted.len(), 1);
}

fn neuron(uid: u16, ip: [u8; 4], permit: bool, stakes: &[u64]) -> NeuronInfoLite {
    let key = |seed: u8| Keypair::from_seed(&[seed; 32]).public();
    NeuronInfoLite {
        hotkey: key(uid as u8 + 1),
        coldkey: key(200),
        uid,
        netuid: NETUID,
        active: true,
        axon_info: AxonInfo {
            block: CURRENT - 10,
            version: 10_005_000,
            ip: u32::from_be_bytes(ip) as u128,
            port: 8091 + uid,
            ip_type: 4,
            protocol: 4,
            placeholder1: 0,
            placeholder2: 0,
        },
        prometheus_info: PrometheusInfo {
            block: 0,
            version: 0,
            ip: 0,
            port: 0,
            ip_type: 0,
        },
        stake: stakes
            .iter()
            .enumerate()
            .map(|(i, s)| (key(100 + i as u8), Compact(*s)))
            .collect(),
        rank: 0,
        emission: 1_000,
        incentive: 0,
        consensus: 0,
        trust: 0,
        validator_trust: 0,
        dividends: 0,
        last_update: CURRENT - uid as u64,
        validator_permit: permit,
        pruning_score: 65_535,
    }
}

#[tokio::test]
async fn the_metagraph_reads_neurons_as_the_sdk_does() {
    let neurons = vec![
        neuron(0, [10, 0, 0, 1], true, &[4_096_000_000_000, 1]),
        neuron(1, [192, 168, 1, 20], false, &[]),
        neuron(2, [127, 0, 0, 1], false, &[2_500_000_000]),
    ];
    let bytes = neurons.encode();
    let keys = sdk_keys(&Keypair::from_seed(&[1; 32]).ss58()).await;
    let (server, state) = node(&keys, Fate::Lands).await;
    // Older runtimes wrap the answer in one more Vec<u8>; both must read the same.
    for answer in [bytes.clone(), bytes.encode()] {
        state.lock().unwrap().neurons = hex(&answer);
        let mg = chain(&server.url, None, false).metagraph().await.unwrap();
        assert_eq!(mg.netuid, NETUID);
        assert_eq!(mg.neurons.len(), 3);
        let sdk_view = sdk(json!({"op": "neurons", "bytes": hex(&bytes)})).await;
        for (ours, theirs) in mg.neurons.iter().zip(sdk_view.as_array().unwrap()) {
            assert_eq!(theirs["hotkey"], ours.hotkey);
            assert_eq!(theirs["coldkey"], ours.coldkey);
            assert_eq!(theirs["uid"], ours.uid);
            assert_eq!(theirs["netuid"], NETUID);
            assert_eq!(theirs["axon_port"], ours.port);
            assert_eq!(theirs["validator_permit"], ours.validator_permit);
            let rao = theirs["stake_rao"].as_u64().unwrap() as f64;
            assert_eq!(rao / 1e9, ours.stake);
            let ip = std::net::Ipv4Addr::from(theirs["axon_ip"].as_u64().unwrap() as u32);
            assert_eq!(ip.to_string(), ours.ip);
        }
    }
    assert_eq!(
        chain(&server.url, None, false)
            .metagraph()
            .await
            .unwrap()
            .neurons[0]
            .stake,
        4096.000000001
    );
    state.lock().unwrap().neurons = hex(&bytes[..bytes.len() - 3]);
    let err = chain(&server.url, None, false)
        .metagraph()
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::Decode(_)), "{err}");
}

// The CLI runs as a blocking subprocess: the scripted node needs a worker of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_the_metagraph_and_sets_weights_on_a_subtensor_node() {
    let wallets = tempfile::tempdir().unwrap();
    let agentao = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_agentao"))
            .args(args)
            .env("AGENTAO_WALLET_PATH", wallets.path())
            .env("AGENTAO_LOG_FORMAT", "json")
            .env_remove("AGENTAO_SUBTENSOR_NETWORK")
            .output()
            .unwrap()
    };
    let created = agentao(&["subnet", "create-hotkey"]);
    assert!(created.status.success(), "{created:?}");
    let hotkey = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let keys = sdk_keys(&hotkey).await;
    let (server, state) = node(&keys, Fate::Lands).await;
    state.lock().unwrap().neurons = hex(&vec![neuron(0, [10, 0, 0, 7], true, &[1])].encode());
    let network = ["--subtensor.network", server.url.as_str()];

    let out = agentao(&[&["subnet", "metagraph"][..], &network].concat());
    assert!(out.status.success(), "{out:?}");
    let mg: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(mg["netuid"], NETUID);
    assert_eq!(mg["neurons"][0]["ip"], "10.0.0.7");

    let set = [
        "subnet",
        "set-weights",
        "--uids",
        "0,1",
        "--weights",
        "0.25,0.75",
        "--no-wait",
    ];
    let out = agentao(&[&set[..], &network].concat());
    assert!(out.status.success(), "{out:?}");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["weights"], json!([21845, 65535]));
    assert_eq!(state.lock().unwrap().submitted.len(), 1);

    // A refusal is one line and exit code 2, and nothing more is submitted.
    let limit = keys["WeightsSetRateLimit"].as_str().unwrap().to_owned();
    state
        .lock()
        .unwrap()
        .storage
        .insert(limit, hex(&10_000u64.encode()));
    let out = agentao(&[&set[..], &network].concat());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("too soon to set weights"), "{err}");
    assert_eq!(state.lock().unwrap().submitted.len(), 1);

    // Registration belongs to btcli on a real network; a bad network name is refused.
    let out = agentao(&[&["subnet", "register"][..], &network].concat());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = agentao(&["subnet", "metagraph", "--subtensor.network", "mainnet"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

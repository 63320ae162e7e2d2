//! The wire protocol against the real Python Bittensor SDK (10.5.0, in a venv): a Python
//! dendrite calls our axon, our dendrite calls a Python axon, keys and signatures cross both
//! ways; and bad requests are refused before any handler runs.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentao::subnet::{
    Axon, AxonConfig, AxonTarget, CodingTask, Dendrite, Keypair, Metagraph, Neuron, Wallet,
};

use crate::support::{sdk_axon, sdk_hotkey, sdk_json};

const PRELUDE: &str = r#"
import json, sys, time, typing
import bittensor as bt
import bittensor.utils.networking as net
net.get_external_ip = lambda: "127.0.0.1"

class CodingTask(bt.Synapse):
    repo: str = ""
    problem_statement: str = ""
    patch: typing.Optional[str] = ""
    task_id: str = ""
    agent_name: str = ""
    cost: float = 0.0
"#;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn neuron(uid: u16, hotkey: &str, permit: bool, stake: f64) -> Neuron {
    Neuron {
        uid,
        hotkey: hotkey.to_owned(),
        coldkey: String::new(),
        stake,
        ip: "127.0.0.1".into(),
        port: 0,
        validator_permit: permit,
    }
}

/// Our axon serving CodingTask with a canned patch; counts handler calls.
pub(crate) async fn our_axon(
    keypair: Keypair,
    metagraph: Metagraph,
    cfg: AxonConfig,
) -> (u16, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let axon = Axon::new(keypair, metagraph, cfg).coding_task(move |s| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            let mut t = s.body;
            t.patch = Some(format!("patch for {}", t.repo));
            t.agent_name = "agentao-test".into();
            t
        }
    });
    (port, calls, axon.serve(listener))
}

#[tokio::test]
async fn a_python_dendrite_calls_our_axon() {
    let dir = tempfile::tempdir().unwrap();
    // The Python side's wallet, written by us in the SDK's keyfile format.
    let caller = sdk_hotkey(dir.path(), "validator");
    let (ours, _) = Keypair::generate();
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &caller.ss58(), true, 100.0)],
    };
    let (port, calls, server) = our_axon(ours.clone(), metagraph, AxonConfig::default()).await;
    let script = format!(
        r#"{PRELUDE}
w = bt.Wallet(name="validator", hotkey="default", path=sys.argv[1])
assert w.hotkey.ss58_address == sys.argv[2], "the SDK reads our keyfile"
d = bt.Dendrite(wallet=w)
info = bt.AxonInfo(version=1, ip="127.0.0.1", port={port}, ip_type=4, hotkey=sys.argv[3], coldkey=sys.argv[3])
r = d.query(info, CodingTask(repo="pypi/idna", problem_statement="fix it"), timeout=20)
print(json.dumps({{"patch": r.patch, "status": r.axon.status_code, "message": r.axon.status_message, "agent": r.agent_name}}))
"#
    );
    let args = vec![dir.path().display().to_string(), caller.ss58(), ours.ss58()];
    let got = sdk_json(script, args).await;
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["patch"], "patch for pypi/idna");
    assert_eq!(got["agent"], "agentao-test");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    server.abort();
}

#[tokio::test]
async fn our_dendrite_calls_a_python_axon() {
    let dir = tempfile::tempdir().unwrap();
    let miner = sdk_hotkey(dir.path(), "miner");
    let port = free_port();
    let script = format!(
        r#"{PRELUDE}
w = bt.Wallet(name="miner", hotkey="default", path=sys.argv[1])
def forward(s: CodingTask) -> CodingTask:
    s.patch = "diff from python for " + s.repo
    s.agent_name = "python-sdk"
    return s
ax = bt.Axon(wallet=w, port={port}, ip="127.0.0.1", external_ip="127.0.0.1")
ax.attach(forward_fn=forward)
ax.start()
print("ready", flush=True)
time.sleep(120)
"#
    );
    let mut child = sdk_axon(
        &script,
        &[std::ffi::OsStr::new(&dir.path())],
        port,
        Stdio::piped(),
    )
    .await;
    let (me, _) = Keypair::generate();
    let dendrite = Dendrite::new(me);
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: miner.ss58(),
    };
    let task = CodingTask {
        repo: "pypi/attrs".into(),
        problem_statement: "fix it".into(),
        ..CodingTask::default()
    };
    let results = dendrite
        .fan_out(&[target.clone(), target], &task, Duration::from_secs(20))
        .await;
    for r in &results {
        assert_eq!(r.status_code, 200, "{}", r.status_message);
        let s = r.synapse.as_ref().unwrap();
        assert_eq!(
            s.body.patch.as_deref(),
            Some("diff from python for pypi/attrs")
        );
        assert_eq!(s.body.agent_name, "python-sdk");
        assert_eq!(s.axon.as_ref().unwrap().status_code, Some(200));
    }
    // A signature by the wrong key is refused by the SDK's own verification.
    let impostor = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: Keypair::generate().0.ss58(),
    };
    let r = dendrite
        .call(&impostor, task, Duration::from_secs(20))
        .await;
    assert_eq!(r.status_code, 401, "{}", r.status_message);
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn bad_requests_never_reach_the_handler() {
    let (ours, _) = Keypair::generate();
    let (validator, _) = Keypair::generate();
    let (stranger, _) = Keypair::generate();
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &validator.ss58(), true, 10.0)],
    };
    let cfg = AxonConfig {
        max_body_bytes: 4096,
        ..AxonConfig::default()
    };
    let (port, calls, server) = our_axon(ours.clone(), metagraph, cfg).await;
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: ours.ss58(),
    };
    let url = format!("http://127.0.0.1:{port}/CodingTask");
    let http = reqwest::Client::new();
    let send = |headers: Vec<(String, String)>, body: Vec<u8>| {
        let mut req = http
            .post(&url)
            .body(body)
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let d = Dendrite::new(validator.clone());
    let task = CodingTask {
        repo: "pypi/x".into(),
        ..CodingTask::default()
    };

    // A good request passes once; replayed as is, it is refused.
    let (s, h) = d.sign(&target, task.clone(), Duration::from_secs(10));
    let body = serde_json::to_vec(&s).unwrap();
    assert_eq!(send(h.clone(), body.clone()).await, 200);
    assert_eq!(send(h, body).await, 401, "replayed nonce");

    // Wrong signature: signed by a stranger but claiming the validator's hotkey.
    let (s, mut h) =
        Dendrite::new(stranger.clone()).sign(&target, task.clone(), Duration::from_secs(10));
    for (k, v) in h.iter_mut() {
        if k == "bt_header_dendrite_hotkey" {
            *v = validator.ss58();
        }
    }
    assert_eq!(
        send(h, serde_json::to_vec(&s).unwrap()).await,
        401,
        "wrong signature"
    );

    // Stale nonce: a minute old, re-signed properly.
    let (s, mut h) = d.sign(&target, task.clone(), Duration::from_secs(10));
    let stale = chrono::Utc::now().timestamp_nanos_opt().unwrap() - 60_000_000_000;
    let uuid = h
        .iter()
        .find(|(k, _)| k == "bt_header_dendrite_uuid")
        .unwrap()
        .1
        .clone();
    let hash = s.body_hash();
    let msg = format!("{stale}.{}.{}.{uuid}.{hash}", validator.ss58(), ours.ss58());
    for (k, v) in h.iter_mut() {
        if k == "bt_header_dendrite_nonce" {
            *v = stale.to_string();
        }
        if k == "bt_header_dendrite_signature" {
            *v = format!("0x{}", hex::encode(validator.sign(msg.as_bytes())));
        }
        if k == "bt_header_dendrite_uuid" {
            *v = format!("{uuid}-fresh");
        }
    }
    assert_eq!(
        send(h, serde_json::to_vec(&s).unwrap()).await,
        401,
        "stale nonce"
    );

    // Unknown hotkey: a valid signature from someone not registered.
    let (s, h) = Dendrite::new(stranger).sign(&target, task.clone(), Duration::from_secs(10));
    assert_eq!(
        send(h, serde_json::to_vec(&s).unwrap()).await,
        403,
        "unknown hotkey"
    );

    // Oversized body.
    let big = CodingTask {
        problem_statement: "x".repeat(10_000),
        ..task.clone()
    };
    let (s, h) = d.sign(&target, big, Duration::from_secs(10));
    assert_eq!(
        send(h, serde_json::to_vec(&s).unwrap()).await,
        413,
        "oversized body"
    );

    // Malformed JSON.
    let (_, h) = d.sign(&target, task, Duration::from_secs(10));
    assert_eq!(send(h, b"{not json".to_vec()).await, 400, "malformed JSON");

    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "only the one good request was handled"
    );
    server.abort();
}

/// The original subnet's class exactly as published: no defaults for `repo` and
/// `problem_statement`, no hash fields.
pub(crate) const ORIGINAL: &str = r#"
import asyncio, json, sys, time, typing
import requests
import bittensor as bt
import bittensor.utils.networking as net
net.get_external_ip = lambda: "127.0.0.1"

class CodingTask(bt.Synapse):
    repo: str
    problem_statement: str
    patch: typing.Optional[str] = ""
"#;

/// agentao's `CodingTask` as a Python SDK class (the file `bench axon` serves too) after the
/// imports the scripts use.
pub(crate) const AGENTAO: &str = concat!(
    "import asyncio, json, sys, time, typing\n",
    "import requests\n",
    "import bittensor as bt\n",
    "import bittensor.utils.networking as net\n",
    "net.get_external_ip = lambda: \"127.0.0.1\"\n",
    include_str!("../../src/cli/bench/coding_task.py"),
);

/// A validator wallet for the Python side, and our axon that lets it in.
async fn axon_for_python(
    cfg: AxonConfig,
) -> (
    tempfile::TempDir,
    Wallet,
    Keypair,
    u16,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<()>,
) {
    let dir = tempfile::tempdir().unwrap();
    let caller = Wallet::new(dir.path(), "validator", "default");
    let key = caller.create_hotkey().unwrap();
    let (ours, _) = Keypair::generate();
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &key.ss58(), true, 100.0)],
    };
    let (port, calls, server) = our_axon(ours.clone(), metagraph, cfg).await;
    (dir, caller, ours, port, calls, server)
}

/// Issue 17, item 3: an SDK dendrite's concurrent calls carry increasing nonces that arrive
/// out of order; the SDK's axon answers them all, and so must ours. Replays and forged
/// signatures are still refused. The axon runs on several threads, as in `agentao miner`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_from_one_sdk_dendrite_are_all_answered() {
    let (dir, _, ours, port, calls, server) = axon_for_python(AxonConfig::default()).await;
    let script = format!(
        r#"{ORIGINAL}
w = bt.Wallet(name="validator", hotkey="default", path=sys.argv[1])
d = bt.Dendrite(wallet=w)
info = bt.AxonInfo(version=1, ip="127.0.0.1", port={port}, ip_type=4, hotkey=sys.argv[2], coldkey=sys.argv[2])
runs = []
for _ in range(3):
    rs = d.query([info] * 20, CodingTask(repo="pypi/idna", problem_statement="fix it"), timeout=20)
    runs.append([[r.axon.status_code, r.axon.status_message, r.patch] for r in rs])
url = "http://127.0.0.1:{port}/CodingTask"
s = d.preprocess_synapse_for_request(info, CodingTask(repo="pypi/x", problem_statement="p"), 20)
h, body = s.to_headers(), s.model_dump()
first = requests.post(url, headers=h, json=body).status_code
replay = requests.post(url, headers=h, json=body)
s = d.preprocess_synapse_for_request(info, CodingTask(repo="pypi/x", problem_statement="p"), 20)
h = s.to_headers()
h["bt_header_dendrite_signature"] = "0x" + "11" * 64
forged = requests.post(url, headers=h, json=s.model_dump())
print(json.dumps({{"runs": runs, "first": first,
    "replay": [replay.status_code, replay.json()["message"]],
    "forged": [forged.status_code, forged.json()["message"]]}}))
"#
    );
    let got = sdk_json(script, vec![dir.path().display().to_string(), ours.ss58()]).await;
    server.abort();
    for (i, run) in got["runs"].as_array().unwrap().iter().enumerate() {
        let answers = run.as_array().unwrap();
        assert_eq!(answers.len(), 20);
        for a in answers {
            assert_eq!(a[0], 200, "run {i}: {a}");
            assert_eq!(a[2], "patch for pypi/idna", "run {i}: {a}");
        }
    }
    assert_eq!(got["first"], 200);
    assert_eq!(got["replay"][0], 401, "{}", got["replay"]);
    assert_eq!(got["forged"][0], 401, "{}", got["forged"]);
    assert!(
        got["forged"][1]
            .as_str()
            .unwrap()
            .contains("signature mismatch")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 61, "60 calls and one request");
}

/// Issue 17, item 5: what an SDK dendrite reads from our refusals and answers: a body over
/// the limit is a 413 with our message (not "unexpected mimetype"), a body that does not
/// match its signed hash and a tampered hash are 401, and an answer carries the axon's
/// address and the size headers, so `r.axon.ip` is set.
#[tokio::test]
async fn the_sdk_dendrite_reads_our_refusals_and_answers() {
    let (dir, _, ours, port, calls, server) = axon_for_python(AxonConfig::default()).await;
    let script = format!(
        r#"{AGENTAO}
class OtherHash(bt.Synapse):
    required_hash_fields: typing.ClassVar[tuple[str, ...]] = ("repo",)
    repo: str = ""
    problem_statement: str = ""
    task_id: str = ""
OtherHash.__name__ = "CodingTask"
class Unbound(bt.Synapse):
    repo: str = ""
    problem_statement: str = ""
    task_id: str = ""
Unbound.__name__ = "CodingTask"
w = bt.Wallet(name="validator", hotkey="default", path=sys.argv[1])
d = bt.Dendrite(wallet=w)
info = bt.AxonInfo(version=1, ip="127.0.0.1", port={port}, ip_type=4, hotkey=sys.argv[2], coldkey=sys.argv[2])
url = "http://127.0.0.1:{port}/CodingTask"
out = {{}}
r = d.query(info, CodingTask(repo="pypi/x", problem_statement="x" * 2_000_000), timeout=20)
out["big"] = [r.axon.status_code, r.dendrite.status_code, r.axon.status_message]
r = d.query(info, CodingTask(repo="pypi/x", problem_statement="p", task_id="t1", time_limit=5.0), timeout=20)
out["ok"] = [r.axon.status_code, r.patch, r.axon.ip, r.axon.port, r.axon.hotkey]
r = d.query(info, OtherHash(repo="pypi/x", problem_statement="p", task_id="t2"), timeout=20)
out["other_hash"] = [r.axon.status_code, r.axon.status_message]
r = d.query(info, Unbound(repo="pypi/x", problem_statement="p", task_id="t6"), timeout=20)
out["unbound"] = [r.axon.status_code, r.axon.status_message]
s = d.preprocess_synapse_for_request(info, CodingTask(repo="pypi/x", problem_statement="p", task_id="t3"), 20)
body = s.model_dump()
body["problem_statement"] = "something else"
r = requests.post(url, headers=s.to_headers(), json=body)
out["altered"] = [r.status_code, r.headers.get("content-type"), r.json()["message"]]
s = d.preprocess_synapse_for_request(info, CodingTask(repo="pypi/x", problem_statement="p", task_id="t4"), 20)
h = s.to_headers()
h["computed_body_hash"] = "00" * 32
r = requests.post(url, headers=h, json=s.model_dump())
out["tampered"] = [r.status_code, r.json()["message"]]
s = d.preprocess_synapse_for_request(info, CodingTask(repo="pypi/x", problem_statement="p", task_id="t5"), 20)
r = requests.post(url, headers=s.to_headers(), json=s.model_dump())
out["headers"] = {{k: r.headers.get(k) for k in ["bt_header_axon_ip", "bt_header_axon_port", "header_size", "total_size", "computed_body_hash", "name"]}}
out["content_length"] = len(r.content)
r = requests.get("http://127.0.0.1:{port}/Nope")
out["unknown"] = [r.status_code, r.headers.get("content-type"), r.json()["message"]]
print(json.dumps(out))
"#
    );
    let got = sdk_json(script, vec![dir.path().display().to_string(), ours.ss58()]).await;
    server.abort();
    assert_eq!(got["big"][0], 413, "{got}");
    assert_eq!(got["big"][1], 413, "{got}");
    assert!(got["big"][2].as_str().unwrap().contains("exceeds"), "{got}");
    assert_eq!(got["ok"][0], 200, "{got}");
    assert_eq!(got["ok"][1], "patch for pypi/x");
    assert_eq!(got["ok"][2], "127.0.0.1", "r.axon.ip is set");
    assert_eq!(got["ok"][3], port);
    assert_eq!(got["ok"][4], ours.ss58());
    assert_eq!(got["other_hash"][0], 401, "{got}");
    // The hash of nothing (the original class's) binds nothing: taken only for a body of the
    // original shape, not for one that carries our task id.
    assert_eq!(got["unbound"][0], 401, "{got}");
    assert_eq!(got["altered"][0], 401, "{got}");
    assert_eq!(got["altered"][1], "application/json");
    assert!(
        got["altered"][2]
            .as_str()
            .unwrap()
            .contains("does not match")
    );
    assert_eq!(got["tampered"][0], 401, "{got}");
    assert!(got["tampered"][1].as_str().unwrap().contains("signature"));
    let h = &got["headers"];
    assert_eq!(h["bt_header_axon_ip"], "127.0.0.1", "{got}");
    assert_eq!(h["bt_header_axon_port"], port.to_string());
    assert_eq!(h["name"], "CodingTask");
    assert_eq!(
        h["total_size"],
        got["content_length"].to_string(),
        "total_size is the answer's length"
    );
    assert!(h["header_size"].as_str().unwrap().parse::<u64>().unwrap() > 0);
    assert_eq!(h["computed_body_hash"].as_str().unwrap().len(), 64);
    assert_eq!(got["unknown"][0], 404, "{got}");
    assert_eq!(got["unknown"][1], "application/json");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "only the two good requests"
    );
}

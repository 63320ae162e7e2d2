//! The wire protocol against the real Python Bittensor SDK (10.5.0, in a venv): a Python
//! dendrite calls our axon, our dendrite calls a Python axon, keys and signatures cross both
//! ways; and bad requests are refused before any handler runs.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentao::subnet::{
    Axon, AxonConfig, AxonTarget, CodingTask, Dendrite, Keypair, Metagraph, Neuron, Wallet,
};

use crate::support::bittensor;

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

fn neuron(uid: u16, hotkey: &str, permit: bool, stake: f64) -> Neuron {
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
async fn our_axon(
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
    let python = bittensor().await;
    let dir = tempfile::tempdir().unwrap();
    // The Python side's wallet, written by us in the SDK's keyfile format.
    let caller = Wallet::new(dir.path(), "validator", "default")
        .create_hotkey()
        .unwrap();
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
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-c", &script])
            .arg(dir.path())
            .arg(caller.ss58())
            .arg(ours.ss58())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let got: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["patch"], "patch for pypi/idna");
    assert_eq!(got["agent"], "agentao-test");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    server.abort();
}

#[tokio::test]
async fn our_dendrite_calls_a_python_axon() {
    let python = bittensor().await;
    let dir = tempfile::tempdir().unwrap();
    let miner = Wallet::new(dir.path(), "miner", "default")
        .create_hotkey()
        .unwrap();
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
    let mut child = Command::new(python)
        .args(["-c", &script])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the port.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the Python axon did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
const AGENTAO: &str = concat!(
    "import asyncio, json, sys, time, typing\n",
    "import requests\n",
    "import bittensor as bt\n",
    "import bittensor.utils.networking as net\n",
    "net.get_external_ip = lambda: \"127.0.0.1\"\n",
    include_str!("../../src/cli/bench/coding_task.py"),
);

/// Runs a Python script (the SDK's venv) with `args`; asserts it succeeded and returns its last
/// stdout line as JSON.
async fn python_json(script: String, args: Vec<String>) -> serde_json::Value {
    let python = bittensor().await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-c", &script])
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap()
}

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
    let got = python_json(script, vec![dir.path().display().to_string(), ours.ss58()]).await;
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
    let got = python_json(script, vec![dir.path().display().to_string(), ours.ss58()]).await;
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

/// Replaces header `name`'s value.
fn set(h: &mut [(String, String)], name: &str, value: &str) {
    for (k, v) in h.iter_mut() {
        if k == name {
            *v = value.to_owned();
        }
    }
}

/// A header's value.
fn get(h: &[(String, String)], name: &str) -> String {
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// Re-signs signed headers `h` with another nonce.
fn resign(h: &mut [(String, String)], key: &Keypair, axon: &str, nonce: i64) {
    let msg = format!(
        "{nonce}.{}.{axon}.{}.{}",
        key.ss58(),
        get(h, "bt_header_dendrite_uuid"),
        get(h, "computed_body_hash")
    );
    set(h, "bt_header_dendrite_nonce", &nonce.to_string());
    set(
        h,
        "bt_header_dendrite_signature",
        &format!("0x{}", hex::encode(key.sign(msg.as_bytes()))),
    );
}

/// Posts a synapse body with `headers`; the status, or the transport error.
async fn post(port: u16, headers: &[(String, String)], body: &[u8]) -> Result<u16, String> {
    let mut req = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/CodingTask"))
        .timeout(Duration::from_secs(10))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("{e:?}"))
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap()
}

/// Issue 13: the unsigned `timeout` header widened the nonce window (`1e9`), overflowed it
/// (`-1e12`) and panicked a connection (`1e300`). Any value now gets an answer; nonsense is a
/// 400, and the widening is capped at `max_window_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_header_value_panics_and_the_timeout_cannot_widen_the_nonce_window() {
    let (ours, _) = Keypair::generate();
    let (validator, _) = Keypair::generate();
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &validator.ss58(), true, 10.0)],
    };
    let (port, calls, server) =
        our_axon(ours.clone(), metagraph.clone(), AxonConfig::default()).await;
    let capped = AxonConfig {
        max_window_timeout: Duration::from_secs(1),
        ..AxonConfig::default()
    };
    let (capped_port, capped_calls, capped_server) =
        our_axon(ours.clone(), metagraph, capped).await;
    let started = now_ns();
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: ours.ss58(),
    };
    let d = Dendrite::new(validator.clone());
    let task = CodingTask {
        repo: "pypi/x".into(),
        ..CodingTask::default()
    };
    let signed = || {
        let (s, h) = d.sign(&target, task.clone(), Duration::from_secs(10));
        (h, serde_json::to_vec(&s).unwrap())
    };

    let mut answered = 0;
    for (value, want) in [
        ("1e300", 200),
        ("1e400", 200),
        ("inf", 200),
        ("1e9", 200),
        ("-1e12", 400),
        ("-1", 400),
        ("-inf", 400),
        ("nan", 400),
        ("abc", 400),
        ("", 400),
        ("12 s", 400),
    ] {
        let (mut h, body) = signed();
        set(&mut h, "timeout", value);
        assert_eq!(post(port, &h, &body).await, Ok(want), "timeout: {value:?}");
        answered += usize::from(want == 200);
    }
    for (name, value) in [
        ("bt_header_dendrite_nonce", "99999999999999999999999"),
        ("bt_header_dendrite_nonce", "-9223372036854775808"),
        ("bt_header_dendrite_nonce", "1e18"),
        ("bt_header_dendrite_nonce", ""),
        ("bt_header_dendrite_version", "-99999999999999999999"),
        ("bt_header_dendrite_port", "1e300"),
        ("bt_header_axon_port", "99999999999999999999"),
        ("bt_header_axon_ip", "\u{7f}"),
        ("bt_header_dendrite_signature", "0x"),
        ("bt_header_dendrite_signature", "0xzz"),
        ("bt_header_dendrite_uuid", ""),
        ("computed_body_hash", ""),
        ("header_size", "-1e999"),
        ("total_size", "NaN"),
    ] {
        let (mut h, body) = signed();
        set(&mut h, name, value);
        let got = post(port, &h, &body).await;
        match got {
            Ok(200) => answered += 1,
            Ok(code) => assert!((400..500).contains(&code), "{name}: {value:?}: {code}"),
            // reqwest itself refuses a header value with a control character.
            Err(e) if value.contains('\u{7f}') && e.contains("Builder") => {}
            Err(e) => panic!("{name}: {value:?}: no answer: {e}"),
        }
    }
    // Still serving.
    let (h, body) = signed();
    assert_eq!(post(port, &h, &body).await, Ok(200));
    answered += 1;
    assert_eq!(calls.load(Ordering::SeqCst), answered);

    // A nonce 5.5 s old, never used, with `timeout: 1e9`: the capped axon's window is
    // 4 s + 1 s, the default one's 4 s + 60 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let old = started + 500_000_000;
    for (p, want) in [(capped_port, 401), (port, 200)] {
        let (mut h, body) = signed();
        set(&mut h, "bt_header_dendrite_uuid", &format!("fresh-{p}"));
        set(&mut h, "timeout", "1e9");
        resign(&mut h, &validator, &ours.ss58(), old);
        assert_eq!(post(p, &h, &body).await, Ok(want), "port {p}");
    }
    assert_eq!(capped_calls.load(Ordering::SeqCst), 0);
    server.abort();
    capped_server.abort();
}

/// Issue 13: nonces lived only in memory, so a request captured before a restart was taken
/// after it. A nonce older than the axon's start is refused now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_signed_before_a_restart_is_refused_after_it() {
    let (ours, _) = Keypair::generate();
    let (validator, _) = Keypair::generate();
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &validator.ss58(), true, 10.0)],
    };
    let (port, _, before) = our_axon(ours.clone(), metagraph.clone(), AxonConfig::default()).await;
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: ours.ss58(),
    };
    let d = Dendrite::new(validator.clone());
    let task = CodingTask {
        repo: "pypi/x".into(),
        ..CodingTask::default()
    };
    let (s, used) = d.sign(&target, task.clone(), Duration::from_secs(10));
    let used_body = serde_json::to_vec(&s).unwrap();
    let (s, unused) = d.sign(&target, task.clone(), Duration::from_secs(10));
    let unused_body = serde_json::to_vec(&s).unwrap();
    assert_eq!(post(port, &used, &used_body).await, Ok(200));
    assert_eq!(post(port, &used, &used_body).await, Ok(401), "replay");
    before.abort();

    // The same keys, a new process' axon.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (port, calls, after) = our_axon(ours.clone(), metagraph, AxonConfig::default()).await;
    assert_eq!(post(port, &used, &used_body).await, Ok(401), "replay");
    assert_eq!(
        post(port, &unused, &unused_body).await,
        Ok(401),
        "signed before the start"
    );
    let target = AxonTarget { port, ..target };
    let (s, fresh) = d.sign(&target, task, Duration::from_secs(10));
    assert_eq!(
        post(port, &fresh, &serde_json::to_vec(&s).unwrap()).await,
        Ok(200)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    after.abort();
}

/// Reads from `sock` until it closes or `limit` passes; what was read, and whether it closed.
async fn read_until_closed(sock: &mut tokio::net::TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Err(_) => return (out, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Issue 13: connections that never finished their headers or body stayed open forever, and
/// there was no cap on connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_connections_are_capped() {
    use tokio::io::AsyncWriteExt;
    let (ours, _) = Keypair::generate();
    let (validator, _) = Keypair::generate();
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![neuron(0, &validator.ss58(), true, 10.0)],
    };
    let cfg = AxonConfig {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ..AxonConfig::default()
    };
    let (port, calls, server) = our_axon(ours.clone(), metagraph.clone(), cfg).await;
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", port));

    // Headers never finished; nothing sent at all.
    let mut half = connect().await.unwrap();
    half.write_all(b"POST /CodingTask HTTP/1.1\r\nhost: x\r\ntimeout: 12.0\r\n")
        .await
        .unwrap();
    let mut idle = connect().await.unwrap();
    // A body that never arrives.
    let mut slow = connect().await.unwrap();
    slow.write_all(
        b"POST /CodingTask HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"repo\":",
    )
    .await
    .unwrap();
    for (name, sock) in [("headers", &mut half), ("idle", &mut idle)] {
        let (_, closed) = read_until_closed(sock, Duration::from_secs(8)).await;
        assert!(closed, "{name}: still open after 8 s");
    }
    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(8)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
    assert!(
        closed,
        "the slow body's connection is closed after the answer"
    );
    server.abort();

    // At most two connections: a third waits until one goes.
    let cfg = AxonConfig {
        max_connections: 2,
        header_timeout: Duration::from_secs(3),
        ..AxonConfig::default()
    };
    let (port, _, server) = our_axon(ours.clone(), metagraph, cfg).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let target = AxonTarget {
        ip: "127.0.0.1".into(),
        port,
        hotkey: ours.ss58(),
    };
    let d = Dendrite::new(validator);
    let task = CodingTask {
        repo: "pypi/x".into(),
        ..CodingTask::default()
    };
    let r = d.call(&target, task.clone(), Duration::from_secs(1)).await;
    assert_eq!(r.status_code, 408, "{}", r.status_message);
    drop(held);
    let r = d.call(&target, task, Duration::from_secs(5)).await;
    assert_eq!(r.status_code, 200, "{}", r.status_message);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the first axon handled nothing"
    );
    server.abort();
}

/// A miner that answers 200 with a huge body, with or without its length announced;
/// counts the bytes it managed to send.
pub(crate) async fn hostile_axon(chunked: bool) -> (u16, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                // Read the request's head and body.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_lowercase();
                    if let Some(i) = text.find("\r\n\r\n") {
                        let len: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if buf.len() >= i + 4 + len {
                            break;
                        }
                    }
                }
                let total: usize = 200 << 20;
                let head = if chunked {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_owned()
                } else {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {total}\r\n\r\n"
                    )
                };
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let piece = vec![b'a'; 1 << 16];
                let mut written = 0;
                while written < total {
                    let frame = if chunked {
                        let mut f = format!("{:x}\r\n", piece.len()).into_bytes();
                        f.extend_from_slice(&piece);
                        f.extend_from_slice(b"\r\n");
                        f
                    } else {
                        piece.clone()
                    };
                    if sock.write_all(&frame).await.is_err() {
                        return;
                    }
                    written += piece.len();
                    counter.fetch_add(piece.len(), Ordering::SeqCst);
                }
                if chunked {
                    let _ = sock.write_all(b"0\r\n\r\n").await;
                }
            });
        }
    });
    (port, sent)
}

/// Issue 13: the dendrite read a miner's whole answer. It stops at the cap now, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_answer_is_dropped_at_the_cap() {
    for chunked in [false, true] {
        let (port, sent) = hostile_axon(chunked).await;
        let d = Dendrite::new(Keypair::generate().0);
        let target = AxonTarget {
            ip: "127.0.0.1".into(),
            port,
            hotkey: Keypair::generate().0.ss58(),
        };
        let r = d
            .call(&target, CodingTask::default(), Duration::from_secs(60))
            .await;
        assert!(r.synapse.is_none());
        assert_eq!(
            r.failure,
            Some(agentao::subnet::CallFailure::ProtocolError),
            "chunked {chunked}: {}",
            r.status_message
        );
        assert!(r.status_message.contains("cap"), "{}", r.status_message);
        // Give the writer a moment to notice the closed connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let sent = sent.load(Ordering::SeqCst);
        assert!(
            sent < 64 << 20,
            "chunked {chunked}: the miner sent {sent} bytes before the dendrite hung up"
        );
    }
}

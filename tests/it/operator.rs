//! Issue 17, item 8: the habits a new operator brings from the SDK and its tools, tried on the
//! real binary: the SDK's flags, a miner started with only `--axon.port`, a remote model named
//! without a key, the validator's output on a terminal and as JSON.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::readable_lines;

/// The binary with a clean environment of agentao settings, data and wallets under `dir`.
fn agentao(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentao"));
    c.env("AGENTAO_DATA_DIR", dir.join("data"))
        .env("AGENTAO_WALLET_PATH", dir.join("wallets"))
        .env("AGENTAO_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .env_remove("AGENTAO_MODEL")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("AGENTAO_SUBTENSOR_NETWORK")
        .env_remove("AGENTAO_WALLET_NAME")
        .env_remove("AGENTAO_WALLET_HOTKEY");
    c
}

fn closed_port() -> u16 {
    crate::subnet::free_port()
}

/// `--subtensor.chain_endpoint` (an address, `ws://` when it has no scheme) and
/// `--logging.trace` are the SDK's flags: accepted, the endpoint used, trace records written.
#[test]
fn the_sdks_chain_endpoint_and_trace_flags_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let endpoint = format!("127.0.0.1:{port}");
    let out = agentao(dir.path())
        .args(["--subtensor.chain_endpoint", &endpoint, "--logging.trace"])
        .args(["subnet", "metagraph"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the node is down, not the flags: {stderr}"
    );
    let records: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(
        records.iter().any(|r| r["level"] == "TRACE"
            && r["fields"]["url"]
                .as_str()
                .is_some_and(|u| u.contains(&endpoint))),
        "{stderr}"
    );
    // Not an address: a usage error.
    let out = agentao(dir.path())
        .args(["--subtensor.chain_endpoint", "local", "subnet", "metagraph"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `--model gpt4omini` without a key used to run the embedded model under that name: refused
/// now, saying what would answer; `doctor` says the same instead of promising gpt-4o-mini.
#[test]
fn a_remote_model_without_a_key_is_refused_and_doctor_says_what_answers() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [&["miner"][..], &["validator", "--rounds", "1"]] {
        let out = agentao(dir.path())
            .args(["--model", "gpt4omini"])
            .args(cmd)
            .output()
            .unwrap();
        let said = readable_lines(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {said:?}");
        let error = said.iter().find(|l| l.starts_with("error:")).unwrap();
        assert!(
            error.contains("gpt-4o-mini")
                && error.contains("OPENAI_API_KEY")
                && error.contains("smollm2"),
            "{error}"
        );
    }
    let out = agentao(dir.path())
        .args(["--model", "gpt4omini", "doctor"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let llm = stdout
        .lines()
        .find(|l| l.contains(" llm "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(llm.starts_with("FAIL"), "{llm}");
    assert!(
        llm.contains("gpt-4o-mini") && llm.contains("OPENAI_API_KEY"),
        "{llm}"
    );
    assert!(!llm.contains("will be used"), "{llm}");
}

/// Reads the local chain's entry of `hotkey` through the CLI.
fn chain_entry(dir: &Path, hotkey: &str) -> serde_json::Value {
    let out = agentao(dir).args(["subnet", "metagraph"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let mg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    mg["neurons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["hotkey"] == hotkey)
        .cloned()
        .unwrap()
}

/// `miner --axon.port P` without `--axon.external_ip` used to leave the chain's old port in
/// place without a word. Now it publishes P at the detected address (or, with nothing
/// detected, at the chain's address) and says which.
#[test]
fn a_miner_given_only_a_port_publishes_it_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let created = agentao(dir.path())
        .args(["subnet", "create-hotkey"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let hotkey = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let registered = agentao(dir.path())
        .args(["subnet", "register", "--ip", "127.0.0.1", "--port", "8091"])
        .output()
        .unwrap();
    assert!(registered.status.success(), "{registered:?}");
    let port = closed_port();
    let stderr = dir.path().join("miner.stderr");
    let mut miner = agentao(dir.path())
        .args(["miner", "--axon.port", &port.to_string()])
        // A remote model that is never asked: the miner starts without the embedded one.
        .env("OPENAI_API_KEY", "test")
        .env(
            "OPENAI_BASE_URL",
            format!("http://127.0.0.1:{}/v1", closed_port()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let said = loop {
        let said = readable_lines(&std::fs::read(&stderr).unwrap()).join("\n");
        if said.contains("miner axon on") {
            break said;
        }
        assert!(
            miner.try_wait().unwrap().is_none(),
            "the miner stopped: {said}"
        );
        assert!(Instant::now() < deadline, "the miner did not start: {said}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = miner.kill();
    let _ = miner.wait();
    let entry = chain_entry(dir.path(), &hotkey);
    assert_eq!(entry["port"], port, "the new port is on the chain: {said}");
    let ip = entry["ip"].as_str().unwrap();
    assert!(
        said.contains(&format!("published axon {ip}:{port} on the chain (")),
        "it says what it published: {said}"
    );
}

/// The validator on a terminal prints one summary line a round (not raw JSON); with
/// `--log-format json` every stderr line is a JSON record (the summary and status lines
/// included) and the round's JSON goes to stdout for programs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_validator_summarises_rounds_on_a_terminal_and_keeps_json_pure() {
    let engine = crate::support::engine().await;
    let task = crate::eval::fixture_task(&engine).await;
    let dir = tempfile::tempdir().unwrap();
    agentao::tasks::TaskStore::open(&dir.path().join("data").join("tasks.db"))
        .unwrap()
        .put(&task)
        .unwrap();
    let run = crate::support::run_id("validator-summary");
    let cmd = |hotkey: &str| {
        let mut c = agentao(dir.path());
        c.env("AGENTAO_WALLET_HOTKEY", hotkey)
            .env("AGENTAO_RUN_ID", &run)
            // The judge is never asked: the only miner is down.
            .env("OPENAI_API_KEY", "test")
            .env(
                "OPENAI_BASE_URL",
                format!("http://127.0.0.1:{}/v1", closed_port()),
            );
        c
    };
    let ok = |c: &mut Command| {
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    ok(cmd("miner").args(["subnet", "create-hotkey"]));
    ok(cmd("validator").args(["subnet", "create-hotkey"]));
    let down = closed_port().to_string();
    ok(cmd("miner").args(["subnet", "register", "--ip", "127.0.0.1", "--port", &down]));
    ok(cmd("validator").args(["subnet", "register", "--validator", "--stake", "100"]));
    let round = [
        "validator",
        "--rounds",
        "1",
        "--interval",
        "0",
        "--timeout",
        "5",
    ];

    // On a terminal: stdout and stderr are a pseudo-terminal (Python's pty relays it).
    let mut on_tty = cmd("validator");
    on_tty.env_remove("AGENTAO_LOG_FORMAT");
    let program = on_tty.get_program().to_owned();
    let relay = "import os, pty, sys\nstatus = pty.spawn(sys.argv[1:])\nsys.exit(os.waitstatus_to_exitcode(status))";
    let mut python = Command::new("python3");
    python.args(["-c", relay]).arg(&program).args(round);
    for (k, v) in on_tty.get_envs() {
        match v {
            Some(v) => python.env(k, v),
            None => python.env_remove(k),
        };
    }
    let out = python.stdin(Stdio::null()).output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    let summary: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains("round ") && l.contains("miner(s) asked"))
        .collect();
    assert_eq!(summary.len(), 1, "{screen}");
    assert!(summary[0].contains("1 unreachable"), "{}", summary[0]);
    assert!(summary[0].contains(&task.instance_id), "{}", summary[0]);
    assert!(
        !screen.contains("{\"round_id\""),
        "no raw JSON on a terminal: {screen}"
    );

    // Piped, with JSON logs: nothing but JSON records on stderr; the round's JSON on stdout.
    let out = cmd("validator")
        .args(["--log-format", "json"])
        .args(round)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let records: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("a plain line: {l}")))
        .collect();
    assert!(
        records.iter().any(|r| r["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("miner(s) asked"))),
        "{stderr}"
    );
    let data: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(
        data["miners"][0]["outcome"]["kind"], "unreachable",
        "{data}"
    );
    crate::support::assert_no_containers(&run, 20);
}

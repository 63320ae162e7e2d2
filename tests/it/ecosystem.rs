//! Issue 17, items 4, 6 and 7: what agentao writes, read by tools its authors did not write.
//! Wallets through the SDK's `bt.Wallet` and btcli's wallet code; run reports and predictions
//! through `swebench` 5.0.2's own readers; dataset rows through swebench's task loader and the
//! card through `huggingface_hub.DatasetCard`.

use std::path::Path;
use std::process::Command;

use agentao::dataset::{ExportOptions, Record, RecordStore, export};
use agentao::tasks::{DIFFICULTY_LEVELS, Task};

use crate::support::{bittensor, python_venv, readable_lines};

fn agentao() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentao"));
    c.env("AGENTAO_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .env_remove("AGENTAO_WALLET_NAME")
        .env_remove("AGENTAO_WALLET_HOTKEY");
    c
}

/// Runs `python -c script args…` and returns its last stdout line as JSON.
fn python_json(python: &Path, script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python)
        .args(["-c", script])
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap()
}

async fn swebench() -> std::path::PathBuf {
    static VENV: tokio::sync::OnceCell<std::path::PathBuf> = tokio::sync::OnceCell::const_new();
    VENV.get_or_init(|| python_venv("swebench", &["swebench==5.0.2"]))
        .await
        .clone()
}

/// `agentao subnet create-hotkey` for `hotkey` of wallet `w` under `root`: its stdout.
fn create_hotkey(root: &Path, hotkey: &str) -> std::process::Output {
    agentao()
        .args(["subnet", "create-hotkey", "--wallet.name", "w"])
        .args(["--wallet.hotkey", hotkey, "--wallet.path"])
        .arg(root)
        .output()
        .unwrap()
}

/// Item 4: a wallet agentao creates has its own coldkey (not the hotkey), a `pub` file per
/// hotkey and the SDK's keyfile shape: `bt.Wallet` reads coldkey, coldkeypub, hotkey and
/// hotkeypub, and btcli's `wallet overview` code path, up to where it needs the chain, maps
/// both hotkeys to that coldkey. An SDK-encrypted hotkey is refused with exit 2.
#[tokio::test]
async fn the_sdk_and_btcli_read_an_agentao_wallet() {
    let python = bittensor().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("wallets");
    let first = create_hotkey(&root, "h1");
    assert!(first.status.success(), "{first:?}");
    let h1 = String::from_utf8(first.stdout).unwrap().trim().to_owned();
    let said = readable_lines(&first.stderr).join("\n");
    assert!(said.contains("new coldkey"), "{said}");
    let second = create_hotkey(&root, "h2");
    assert!(second.status.success(), "{second:?}");
    let h2 = String::from_utf8(second.stdout).unwrap().trim().to_owned();
    let cold = agentao::subnet::Wallet::new(&root, "w", "h1")
        .coldkey_ss58()
        .unwrap();
    assert!(cold != h1 && cold != h2, "the coldkey is not a hotkey");

    let script = r#"
import json, os, sys
import bittensor as bt
root = sys.argv[1]
out = {}
for h in ["h1", "h2"]:
    w = bt.Wallet(name="w", hotkey=h, path=root)
    out[h] = {"coldkeypub": w.coldkeypub.ss58_address, "hotkeypub": w.hotkeypub.ss58_address,
              "hotkey": w.hotkey.ss58_address, "coldkey": w.coldkey.ss58_address}
# The SDK's own wallet, unencrypted, for its files' shape.
sdk = bt.Wallet(name="sdk", hotkey="h", path=root)
sdk.create_new_coldkey(use_password=False, suppress=True)
sdk.create_new_hotkey(use_password=False, suppress=True)
def shape(name, rel):
    p = os.path.join(root, name, rel)
    return [sorted(json.load(open(p)).keys()), oct(os.stat(p).st_mode & 0o777)]
out["shapes"] = {n: {rel: shape(n, rel.replace("H", h)) for rel in ["coldkey", "coldkeypub.txt", "hotkeys/H", "hotkeys/Hpub.txt"]}
                 for n, h in [("w", "h1"), ("sdk", "h")]}
enc = bt.Wallet(name="w", hotkey="enc", path=root)
enc.create_new_hotkey(use_password=True, hotkey_password="secret", suppress=True)
print(json.dumps(out))
"#;
    let got = python_json(&python, script, &[root.to_str().unwrap()]);
    for (h, key) in [("h1", &h1), ("h2", &h2)] {
        assert_eq!(got[h]["coldkeypub"], cold, "{got}");
        assert_eq!(got[h]["coldkey"], cold, "{got}");
        assert_eq!(got[h]["hotkeypub"], *key, "{got}");
        assert_eq!(got[h]["hotkey"], *key, "{got}");
    }
    assert_eq!(
        got["shapes"]["w"], got["shapes"]["sdk"],
        "the same files, keys and modes as the SDK's"
    );

    // btcli's overview, as far as it runs without a chain: the wallets under the path, their
    // hotkeys, the coldkeypub check, and the hotkey -> coldkey map it queries the chain with.
    let btcli = python_venv("btcli", &["bittensor-cli==9.23.2"]).await;
    let script = r#"
import json, sys
from bittensor_cli.src.bittensor import utils
from bittensor_cli.src.commands import wallets
root = sys.argv[1]
hot = []
for w in utils.get_coldkey_wallets_for_path(root):
    if w.name == "w":
        hot.extend(utils.get_hotkey_wallets_for_wallet(w))
valid, invalid = utils.validate_coldkey_presence(hot)
addresses, by_hotkey = wallets._get_key_address(valid)
print(json.dumps({"hotkeys": sorted(w.hotkey_str for w in hot), "invalid": [w.name for w in invalid],
    "map": {h: sorted(c.keys()) for h, c in by_hotkey.items()}}))
"#;
    let got = python_json(&btcli, script, &[root.to_str().unwrap()]);
    assert_eq!(
        got["hotkeys"],
        serde_json::json!(["h1", "h2"]),
        "the encrypted one is skipped: {got}"
    );
    assert_eq!(got["invalid"], serde_json::json!([]));
    assert_eq!(got["map"][&h1], serde_json::json!([cold]), "{got}");
    assert_eq!(got["map"][&h2], serde_json::json!([cold]), "{got}");

    let out = agentao()
        .args([
            "subnet",
            "whoami",
            "--wallet.name",
            "w",
            "--wallet.hotkey",
            "enc",
        ])
        .arg("--wallet.path")
        .arg(&root)
        .output()
        .unwrap();
    let said = readable_lines(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said:?}");
    assert!(
        said.iter()
            .any(|l| l.starts_with("error:") && l.contains("is encrypted")),
        "{said:?}"
    );
}

/// A SWE-bench row (no agentao fields) for `id`.
fn swe_bench_row(id: &str) -> serde_json::Value {
    serde_json::json!({
        "repo": "astropy/astropy", "instance_id": id, "base_commit": "abc",
        "patch": "diff --git a/x b/x\n", "test_patch": "", "problem_statement": "broken",
        "hints_text": "", "created_at": "2023-01-01T00:00:00Z", "version": "5.0",
        "FAIL_TO_PASS": "[\"t.py::a\"]", "PASS_TO_PASS": "[]", "environment_setup_commit": "abc",
        "difficulty": "15 min - 1 hour"
    })
}

/// Item 6: an official SWE-bench row has no `image`: refused before anything runs, naming the
/// field, with exit 2 (it used to end as an environment error from the engine).
#[test]
fn a_swe_bench_row_without_an_image_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks.jsonl");
    let id = "astropy__astropy-12907";
    std::fs::write(&tasks, format!("{}\n", swe_bench_row(id))).unwrap();
    let preds = dir.path().join("preds.jsonl");
    std::fs::write(
        &preds,
        serde_json::json!({"instance_id": id, "model_name_or_path": "m", "model_patch": "x"})
            .to_string(),
    )
    .unwrap();
    let out = agentao()
        .arg("eval")
        .arg("--tasks")
        .arg(&tasks)
        .arg("--predictions")
        .arg(&preds)
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        // Nothing may reach the engine: a dead socket proves it.
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let said = readable_lines(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said:?}");
    let error = said.iter().find(|l| l.starts_with("error:")).unwrap();
    assert!(error.contains(id) && error.contains("`image`"), "{error}");
    assert!(!dir.path().join("run").exists(), "nothing was run");
}

/// Item 6: SWE-agent's dict-shaped `preds.json` is evaluated; the report carries every key
/// swebench's `make_run_report` writes (schema 2, submitted/completed/incomplete ids), with the
/// same types and, where they do not depend on the evaluation, the same values swebench
/// computes from the same files through its own readers.
#[tokio::test]
async fn swebench_reads_our_predictions_and_our_report_has_its_shape() {
    let engine = crate::support::engine().await;
    let task = crate::eval::fixture_task(&engine).await;
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks.jsonl");
    let mut other = task.clone();
    other.instance_id = "tinycalc__unpredicted".into();
    let mut empty = task.clone();
    empty.instance_id = "tinycalc__empty".into();
    std::fs::write(
        &tasks,
        [&task, &other, &empty]
            .iter()
            .map(|t| serde_json::to_string(t).unwrap() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    // As SWE-agent writes it: pretty-printed, keyed by instance id.
    let preds = dir.path().join("preds.json");
    let by_id = serde_json::json!({
        task.instance_id.clone(): {"model_name_or_path": "swe-agent", "instance_id": task.instance_id, "model_patch": task.patch},
        empty.instance_id.clone(): {"model_name_or_path": "swe-agent", "instance_id": empty.instance_id, "model_patch": ""},
    });
    std::fs::write(&preds, serde_json::to_string_pretty(&by_id).unwrap()).unwrap();
    let run_dir = dir.path().join("run");
    let out = agentao()
        .arg("eval")
        .arg("--tasks")
        .arg(&tasks)
        .arg("--predictions")
        .arg(&preds)
        .arg("--run-dir")
        .arg(&run_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", readable_lines(&out.stderr));
    let ours: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(ours["resolved_ids"], serde_json::json!([task.instance_id]));
    assert_eq!(ours["completed_ids"], serde_json::json!([task.instance_id]));
    assert_eq!(
        ours["incomplete_ids"],
        serde_json::json!([other.instance_id])
    );
    assert_eq!(
        ours["empty_patch_ids"],
        serde_json::json!([empty.instance_id])
    );
    assert_eq!(ours["schema_version"], 2);

    let python = swebench().await;
    let script = r#"
import json, os, sys
from swebench.harness.utils import get_predictions_from_file, load_swebench_dataset
from swebench.harness.reporting import make_run_report
preds = get_predictions_from_file(sys.argv[1], "unused", "test")
dataset = load_swebench_dataset(sys.argv[2])
os.chdir(sys.argv[3])
path = make_run_report({p["instance_id"]: p for p in preds}, dataset, "agentao-check")
print(json.dumps({"preds": preds, "ids": [d["instance_id"] for d in dataset],
                  "report": json.load(open(path))}))
"#;
    let check = dir.path().join("check");
    std::fs::create_dir_all(&check).unwrap();
    let got = python_json(
        &python,
        script,
        &[
            preds.to_str().unwrap(),
            tasks.to_str().unwrap(),
            check.to_str().unwrap(),
        ],
    );
    assert_eq!(got["preds"].as_array().unwrap().len(), 2);
    assert_eq!(
        got["ids"].as_array().unwrap().len(),
        3,
        "swebench reads our tasks"
    );
    let theirs = got["report"].as_object().unwrap();
    for (key, value) in theirs {
        let mine = ours
            .get(key)
            .unwrap_or_else(|| panic!("our report lacks {key}"));
        assert_eq!(
            std::mem::discriminant(mine),
            std::mem::discriminant(value),
            "{key}: ours {mine}, swebench's {value}"
        );
    }
    // What does not depend on running the tests is the same.
    for key in [
        "total_instances",
        "submitted_instances",
        "submitted_ids",
        "incomplete_ids",
        "empty_patch_ids",
        "schema_version",
    ] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
}

fn record(task: &Task, miner_patch: &str, trajectory: Option<&str>) -> Record {
    let mut r = Record::for_task(task);
    r.miner_hotkey = "5Miner".into();
    r.model_patch = miner_patch.to_owned();
    if let Some(t) = trajectory {
        r.trajectory = t.to_owned();
    }
    r
}

/// Items 6 and 7: in the exported dataset `patch` is the gold fix (a SWE-bench tool reading it
/// sees the gold patch, not a miner's), `model_patch` is the miner's, `difficulty` is one of
/// SWE-bench Verified's strings and `trajectory` is JSON; shard names stay true across
/// exports; a card name with `: ` and `#` round-trips through `huggingface_hub.DatasetCard`.
#[tokio::test]
async fn swe_bench_tools_read_our_dataset_and_the_hub_reads_our_card() {
    let mut task: Task = serde_json::from_value(swe_bench_row("pkg__1.0-0000abcd")).unwrap();
    task.patch = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+b\n".into();
    task.difficulty_features = Some(agentao::tasks::Difficulty {
        gold_lines: 2,
        gold_files: 1,
        function_lines: 8,
        ..Default::default()
    });
    task.difficulty = task
        .difficulty_features
        .as_ref()
        .unwrap()
        .level()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let mut store = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    store
        .append(&mut record(&task, "MINER PATCH 1", Some("{\"steps\": []}")))
        .unwrap();
    let name = "agentao: SN62 #1 'coding' dataset";
    let opts = ExportOptions {
        name: name.into(),
        ..ExportOptions::default()
    };
    let first = export(&store, &out, &opts).unwrap();
    store
        .append(&mut record(&task, "MINER PATCH 2", None))
        .unwrap();
    let second = export(&store, &out, &opts).unwrap();
    assert_eq!(first.new_shards, ["data/train-00000.parquet"]);
    assert_eq!(second.new_shards, ["data/train-00001.parquet"]);

    let python = swebench().await;
    let script = r#"
import glob, json, sys
from swebench.harness.utils import load_swebench_dataset
from huggingface_hub import DatasetCard
d = sys.argv[1]
rows = []
for shard in sorted(glob.glob(d + "/data/*.parquet")):
    rows.extend(load_swebench_dataset(shard))
card = DatasetCard.load(d + "/README.md")
print(json.dumps({"rows": [{k: r[k] for k in ["instance_id", "patch", "model_patch", "difficulty", "trajectory"]} for r in rows],
                  "pretty_name": card.data.pretty_name, "configs": card.data.to_dict().get("configs")}))
"#;
    let got = python_json(&python, script, &[out.to_str().unwrap()]);
    let rows = got["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, miner) in rows.iter().zip(["MINER PATCH 1", "MINER PATCH 2"]) {
        assert_eq!(row["patch"], task.patch, "the gold fix, as in SWE-bench");
        assert_eq!(row["model_patch"], miner);
        assert!(
            DIFFICULTY_LEVELS.contains(&row["difficulty"].as_str().unwrap()),
            "{row}"
        );
        let trajectory: Result<serde_json::Value, _> =
            serde_json::from_str(row["trajectory"].as_str().unwrap());
        assert!(trajectory.is_ok(), "{row}");
    }
    assert_eq!(rows[0]["difficulty"], "<15 min fix");
    assert_eq!(got["pretty_name"], name, "{got}");
    assert_eq!(
        got["configs"][0]["data_files"][0]["path"],
        "data/train-*.parquet"
    );
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("`model_patch`"),
        "the card documents the columns"
    );
}

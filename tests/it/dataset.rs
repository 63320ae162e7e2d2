//! The dataset: Parquet exports loaded by the real `datasets` library and pandas, incremental
//! export, and `push` against a local server speaking the Hub's upload protocol.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use agentao::dataset::{ExportOptions, HubClient, HubError, Record, RecordStore, export};
use agentao::tasks::Task;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::support::{Response, TestServer, python_venv};

fn records(store: &mut RecordStore, n: usize, offset: usize) {
    for i in offset..offset + n {
        let task: Task = serde_json::from_value(serde_json::json!({
            "instance_id": format!("pkg{}__1.0-{:08x}", i % 7, i / 3),
            "repo": format!("pypi/pkg{}", i % 7), "patch": "--- a/x\n+++ b/x\n", "problem_statement": format!("problem {i}"),
            "FAIL_TO_PASS": ["tests/t.py::a"], "PASS_TO_PASS": ["tests/t.py::b"],
            "package": format!("pkg{}", i % 7), "pypi_version": "1.0", "mutation_kind": "compare_swap"
        }))
        .unwrap();
        let mut r = Record::for_task(&task);
        r.miner_hotkey = format!("5Miner{}", i % 5);
        r.resolved = i % 3 == 0;
        r.final_score = if r.resolved { 0.9 } else { 0.0 };
        r.model_error = i % 10 == 7;
        r.judge_quality = (i % 2 == 0).then_some(0.75);
        r.prompt_tokens = i as i64;
        r.trajectory = format!("{{\"steps\": {i}}}");
        store.append(&mut r).unwrap();
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn shard_hashes(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir.join("data"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                sha(&std::fs::read(e.path()).unwrap()),
            )
        })
        .collect()
}

#[tokio::test]
async fn exports_load_in_datasets_and_pandas_and_grow_without_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let mut store = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    records(&mut store, 2500, 0);
    let opts = ExportOptions {
        rows_per_shard: 1000,
        row_group_rows: 300,
        ..ExportOptions::default()
    };
    let first = export(&store, &out, &opts).unwrap();
    assert_eq!((first.new_rows, first.total_shards), (2500, 3));
    let before = shard_hashes(&out);
    records(&mut store, 500, 2500);
    let second = export(&store, &out, &opts).unwrap();
    assert_eq!((second.new_rows, second.total_rows), (500, 3000));
    assert_eq!(second.new_shards, ["data/train-00003.parquet"]);
    let after = shard_hashes(&out);
    for (name, hash) in &before {
        assert_eq!(after.get(name), Some(hash), "{name} was rewritten");
    }
    // Nothing new: nothing written.
    assert_eq!(export(&store, &out, &opts).unwrap().new_rows, 0);
    assert_eq!(shard_hashes(&out).len(), 4);
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.starts_with("---\n") && card.contains("path: data/train-*.parquet"));
    assert!(card.contains("| rows | 3000 |") && card.contains("1K<n<10K"));

    let python = python_venv("datasets", &["datasets", "pandas", "pyarrow"]).await;
    let script = r#"
import json, sys
import pandas as pd, pyarrow.parquet as pq
from datasets import load_dataset
d = sys.argv[1]
ds = load_dataset(d, split="train")
by_files = load_dataset("parquet", data_files=d + "/data/*.parquet", split="train")
df = pd.read_parquet(d + "/data")
meta = pq.ParquetFile(sorted(__import__("glob").glob(d + "/data/*.parquet"))[0]).metadata
print(json.dumps({
    "datasets_rows": ds.num_rows, "by_files_rows": by_files.num_rows, "pandas_rows": len(df),
    "features": {k: str(v) for k, v in ds.features.items()},
    "dtypes": {k: str(v) for k, v in df.dtypes.items()},
    "quality_nulls": int(df["judge_quality"].isna().sum()),
    "resolved": int(df["resolved"].sum()),
    "model_errors": int(df["model_error"].sum()),
    "row_groups": meta.num_row_groups,
    "compression": meta.row_group(0).column(0).compression,
}))
"#;
    let run = Command::new(&python)
        .args(["-c", script])
        .arg(&out)
        .env("HF_DATASETS_OFFLINE", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_DATASETS_CACHE", dir.path().join("hf-cache"))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(got["datasets_rows"], 3000);
    assert_eq!(got["by_files_rows"], 3000);
    assert_eq!(got["pandas_rows"], 3000);
    assert_eq!(got["features"]["resolved"], "Value('bool')");
    assert_eq!(got["features"]["final_score"], "Value('float64')");
    assert_eq!(got["features"]["prompt_tokens"], "Value('int64')");
    assert_eq!(got["features"]["FAIL_TO_PASS"], "Value('string')");
    assert_eq!(
        got["features"]["recorded_at"],
        "Value('timestamp[us, tz=UTC]')"
    );
    assert_eq!(got["dtypes"]["resolved"], "bool");
    assert_eq!(got["dtypes"]["recorded_at"], "datetime64[us, UTC]");
    assert_eq!(got["quality_nulls"], 1500);
    assert_eq!(got["resolved"], 1000);
    assert_eq!(got["features"]["model_error"], "Value('bool')");
    assert_eq!(
        got["model_errors"], 300,
        "rows whose model failed can be filtered"
    );
    assert_eq!(got["row_groups"], 4, "1000 rows in groups of 300");
    assert_eq!(got["compression"], "ZSTD");
}

/// The requests a fake Hub saw, for assertions.
#[derive(Default)]
struct Hub {
    lfs_batches: Vec<serde_json::Value>,
    uploads: BTreeMap<String, Vec<u8>>,
    verified: Vec<String>,
    commit: Option<String>,
    failures_left: usize,
    auth: Vec<String>,
}

async fn fake_hub(state: Arc<Mutex<Hub>>, refuse: bool) -> TestServer {
    let base = Arc::new(Mutex::new(String::new()));
    let base2 = base.clone();
    let server = TestServer::start(move |req| {
        let mut hub = state.lock().unwrap();
        if let Some(a) = req.header("authorization") {
            hub.auth.push(a.to_owned());
        }
        if refuse {
            return Response::new(401, "application/json", r#"{"error":"Invalid credentials"}"#);
        }
        let base = base2.lock().unwrap().clone();
        let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/api/repos/create") => Response::new(409, "application/json", r#"{"error":"exists"}"#),
            ("POST", "/api/datasets/org/ds/preupload/main") => {
                let files: Vec<serde_json::Value> = body["files"].as_array().unwrap().iter().map(|f| {
                    let path = f["path"].as_str().unwrap();
                    let mode = if path.ends_with(".parquet") { "lfs" } else { "regular" };
                    serde_json::json!({"path": path, "uploadMode": mode, "shouldIgnore": false})
                }).collect();
                Response::new(200, "application/json", serde_json::json!({"files": files}).to_string())
            }
            ("POST", "/datasets/org/ds.git/info/lfs/objects/batch") => {
                if hub.failures_left > 0 {
                    hub.failures_left -= 1;
                    return Response::new(500, "text/plain", "try again");
                }
                hub.lfs_batches.push(body.clone());
                let objects: Vec<serde_json::Value> = body["objects"].as_array().unwrap().iter().map(|o| {
                    let oid = o["oid"].as_str().unwrap();
                    serde_json::json!({"oid": oid, "size": o["size"], "actions": {
                        "upload": {"href": format!("{base}/upload/{oid}"), "header": {"x-signed": "1"}},
                        "verify": {"href": format!("{base}/verify")}}})
                }).collect();
                Response::new(200, "application/vnd.git-lfs+json", serde_json::json!({"transfer": "basic", "objects": objects}).to_string())
            }
            ("PUT", p) if p.starts_with("/upload/") => {
                hub.uploads.insert(p["/upload/".len()..].to_owned(), req.body.clone());
                Response::new(200, "text/plain", "")
            }
            ("POST", "/verify") => {
                hub.verified.push(body["oid"].as_str().unwrap_or("").to_owned());
                Response::new(200, "application/json", "{}")
            }
            ("POST", "/api/datasets/org/ds/commit/main") => {
                hub.commit = Some(String::from_utf8(req.body.clone()).unwrap());
                Response::new(200, "application/json", r#"{"commitUrl":"https://hub.local/datasets/org/ds/commit/abc"}"#)
            }
            _ => Response::new(404, "text/plain", "unknown endpoint"),
        }
    })
    .await;
    *base.lock().unwrap() = server.url.clone();
    server
}

#[tokio::test]
async fn push_speaks_the_hub_upload_protocol_and_retries_a_500() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let mut store = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    records(&mut store, 300, 0);
    export(
        &store,
        &out,
        &ExportOptions {
            rows_per_shard: 200,
            ..ExportOptions::default()
        },
    )
    .unwrap();
    let state = Arc::new(Mutex::new(Hub {
        failures_left: 1,
        ..Hub::default()
    }));
    let server = fake_hub(state.clone(), false).await;
    let client = HubClient::new(Some(&server.url), "hf_test_token")
        .with_backoff(std::time::Duration::from_millis(20));
    let report = client.push(&out, "org/ds").await.unwrap();
    assert_eq!((report.files, report.lfs_uploaded), (3, 2));
    assert!(report.commit_url.ends_with("/commit/abc"));

    let hub = state.lock().unwrap();
    assert!(hub.auth.iter().all(|a| a == "Bearer hf_test_token"));
    assert_eq!(hub.lfs_batches.len(), 1, "the 500 was retried once");
    let shards: BTreeMap<String, Vec<u8>> = std::fs::read_dir(out.join("data"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                format!("data/{}", e.file_name().to_string_lossy()),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    let batch = &hub.lfs_batches[0];
    assert_eq!(batch["operation"], "upload");
    assert_eq!(batch["hash_algo"], "sha256");
    let mut asked: Vec<(String, u64)> = batch["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["oid"].as_str().unwrap().to_owned(),
                o["size"].as_u64().unwrap(),
            )
        })
        .collect();
    asked.sort();
    let mut expected: Vec<(String, u64)> =
        shards.values().map(|b| (sha(b), b.len() as u64)).collect();
    expected.sort();
    assert_eq!(asked, expected);
    for (oid, body) in &hub.uploads {
        assert_eq!(&sha(body), oid, "uploaded bytes match their oid");
    }
    assert_eq!(hub.verified.len(), 2);

    let commit = hub.commit.as_ref().unwrap();
    let lines: Vec<serde_json::Value> = commit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["key"], "header");
    let readme = lines.iter().find(|l| l["key"] == "file").unwrap();
    assert_eq!(readme["value"]["path"], "README.md");
    let content = base64::engine::general_purpose::STANDARD
        .decode(readme["value"]["content"].as_str().unwrap())
        .unwrap();
    assert_eq!(content, std::fs::read(out.join("README.md")).unwrap());
    let lfs: Vec<&serde_json::Value> = lines.iter().filter(|l| l["key"] == "lfsFile").collect();
    assert_eq!(lfs.len(), 2);
    for l in lfs {
        let path = l["value"]["path"].as_str().unwrap();
        assert_eq!(l["value"]["oid"], sha(&shards[path]));
        assert_eq!(l["value"]["size"], shards[path].len() as u64);
        assert_eq!(l["value"]["algo"], "sha256");
    }
    assert!(
        !commit.contains(".agentao-export"),
        "the export state is not pushed"
    );
}

#[tokio::test]
async fn a_refused_token_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let mut store = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    records(&mut store, 10, 0);
    export(&store, &out, &ExportOptions::default()).unwrap();
    let state = Arc::new(Mutex::new(Hub::default()));
    let server = fake_hub(state.clone(), true).await;
    let err = HubClient::new(Some(&server.url), "bad")
        .push(&out, "org/ds")
        .await
        .unwrap_err();
    assert!(
        matches!(err, HubError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HF_TOKEN"));
    assert_eq!(state.lock().unwrap().auth.len(), 1, "a 401 is not retried");
}

/// Issue 17, item 8: without HF_TOKEN, `dataset push` uses the token `huggingface-cli login`
/// saved: `HF_TOKEN_PATH`, else `$HF_HOME/token`; HF_TOKEN still wins; with none of them it
/// says where it looked, with exit 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_reads_the_token_file_huggingface_cli_login_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let mut store = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    records(&mut store, 10, 0);
    export(&store, &out, &ExportOptions::default()).unwrap();
    let state = Arc::new(Mutex::new(Hub::default()));
    let server = fake_hub(state.clone(), false).await;
    let hf_home = dir.path().join("hf-home");
    std::fs::create_dir_all(&hf_home).unwrap();
    std::fs::write(hf_home.join("token"), "hf_from_login\n").unwrap();
    let elsewhere = dir.path().join("elsewhere-token");
    std::fs::write(&elsewhere, "hf_from_token_path").unwrap();
    let push = |env: &[(&str, &std::path::Path)], token: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agentao"));
        c.args([
            "dataset",
            "push",
            "--repo",
            "org/ds",
            "--endpoint",
            &server.url,
        ])
        .arg("--dir")
        .arg(&out)
        .env("AGENTAO_LOG_FORMAT", "json")
        .env("HOME", dir.path())
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("HF_HOME")
        .env_remove("XDG_CACHE_HOME");
        for (k, v) in env {
            c.env(k, v);
        }
        if let Some(t) = token {
            c.env("HF_TOKEN", t);
        }
        c.output().unwrap()
    };
    let last_auth = || {
        state
            .lock()
            .unwrap()
            .auth
            .last()
            .cloned()
            .unwrap_or_default()
    };
    let runs = [
        (
            vec![("HF_HOME", hf_home.as_path())],
            None,
            "Bearer hf_from_login",
        ),
        (
            vec![
                ("HF_HOME", hf_home.as_path()),
                ("HF_TOKEN_PATH", elsewhere.as_path()),
            ],
            None,
            "Bearer hf_from_token_path",
        ),
        (
            vec![("HF_HOME", hf_home.as_path())],
            Some("hf_env"),
            "Bearer hf_env",
        ),
    ];
    // The CLI blocks this worker; the fake Hub answers on the other.
    for (env, token, auth) in runs {
        let o = push(&env, token);
        assert!(o.status.success(), "{auth}: {o:?}");
        assert_eq!(last_auth(), auth);
    }
    // `~/.cache/huggingface/token` when nothing else is set.
    let default = dir.path().join(".cache/huggingface");
    std::fs::create_dir_all(&default).unwrap();
    std::fs::write(default.join("token"), "hf_default_place").unwrap();
    let o = push(&[], None);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(last_auth(), "Bearer hf_default_place");
    std::fs::remove_file(default.join("token")).unwrap();
    let o = push(&[], None);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let said = crate::support::readable_lines(&o.stderr).join("\n");
    assert!(
        said.contains("HF_TOKEN is not set") && said.contains(".cache/huggingface/token"),
        "{said}"
    );
}

//! The task forge against the real engine: a local package index with good and bad packages,
//! and a real package from PyPI whose forged tasks are re-checked in fresh containers.

use std::path::Path;
use std::time::Duration;

use agentao::eval::{EvalConfig, Outcome, evaluate};
use agentao::forge::statement::{Secrets, leaks};
use agentao::forge::{Forge, ForgeConfig};
use agentao::tasks::{Task, TaskStore};
use sha2::{Digest, Sha256};

use crate::support::{Response, TestServer, assert_no_containers, base_image, engine, run_id};

/// A `.tar.gz` sdist with top folder `name-version/`.
pub(crate) fn sdist(name: &str, version: &str, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("{name}-{version}/{path}"), bytes.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

pub(crate) fn tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "__pycache__" || name.starts_with('.') || name.ends_with(".egg-info") {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

pub(crate) fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lines a problem statement must not quote: both sides of the bug.
fn bug_lines(task: &Task) -> Vec<String> {
    task.bug_patch
        .lines()
        .filter(|l| {
            (l.starts_with('+') && !l.starts_with("+++"))
                || (l.starts_with('-') && !l.starts_with("---"))
        })
        .map(|l| l[1..].to_owned())
        .collect()
}

fn assert_statement_is_clean(task: &Task) {
    let lines = bug_lines(task);
    let file = task
        .bug_patch
        .lines()
        .find_map(|l| l.strip_prefix("+++ b/"))
        .unwrap_or_default();
    let secrets = Secrets {
        file,
        lines: lines.iter().map(String::as_str).collect(),
    };
    let s = &task.problem_statement;
    assert!(
        !leaks(s, &secrets),
        "{}: statement leaks the bug:\n{s}",
        task.instance_id
    );
    assert!(!s.contains("diff --git") && !s.contains("@@"), "{s}");
    for l in &lines {
        if l.trim().len() >= 4 {
            assert!(!s.contains(l.trim()), "{}: quotes {l:?}", task.instance_id);
        }
    }
}

#[tokio::test]
async fn a_local_index_with_bad_packages_skips_them_and_forges_the_good_one() {
    let engine = engine().await;
    base_image(&engine).await;
    let fixtures = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
    let good = sdist("tinycalc", "1.0.0", &tree(&fixtures.join("tinycalc")));
    let notests = sdist(
        "notests",
        "1.0",
        &[
            (
                "pyproject.toml".into(),
                b"[project]\nname='notests'\nversion='1.0'\n".to_vec(),
            ),
            ("notests.py".into(), b"def f():\n    return 1\n".to_vec()),
        ],
    );
    let corrupt = b"this is not a gzip stream at all".to_vec();
    let mismatch = sdist("mismatch", "1.0", &[("a.py".into(), b"x = 1\n".to_vec())]);
    // name -> (file, bytes, advertised sha256)
    let packages: Vec<(&str, String, Vec<u8>, String)> = vec![
        (
            "tinycalc",
            "tinycalc-1.0.0.tar.gz".into(),
            good.clone(),
            sha(&good),
        ),
        (
            "notests",
            "notests-1.0.tar.gz".into(),
            notests.clone(),
            sha(&notests),
        ),
        (
            "corrupt",
            "corrupt-1.0.tar.gz".into(),
            corrupt.clone(),
            sha(&corrupt),
        ),
        (
            "mismatch",
            "mismatch-1.0.tar.gz".into(),
            mismatch.clone(),
            sha(b"something else"),
        ),
    ];
    let server = TestServer::start(move |req| {
        for (name, file, bytes, digest) in &packages {
            if req.path == format!("/simple/{name}/") {
                let body = serde_json::json!({"files": [{
                    "filename": file, "url": format!("/files/{file}"),
                    "hashes": {"sha256": digest}, "requires-python": ">=3.8"
                }]});
                return Response::new(200, "application/vnd.pypi.simple.v1+json", body.to_string());
            }
            if req.path == format!("/files/{file}") {
                return Response::new(200, "application/octet-stream", bytes.clone());
            }
        }
        Response::new(404, "text/plain", "not found")
    })
    .await;

    let cache = tempfile::tempdir().unwrap();
    let run = run_id("forge-local");
    let mut cfg = ForgeConfig::new(cache.path());
    cfg.index_url = Some(format!("{}/simple", server.url));
    cfg.per_package = 2;
    cfg.max_candidates = 12;
    cfg.workers = 2;
    cfg.suite_timeout = Duration::from_secs(120);
    cfg.candidate_timeout = Duration::from_secs(30);
    cfg.run_id = run.clone();
    let forge = Forge::new(&engine, cfg).unwrap();
    let store = TaskStore::open(&cache.path().join("tasks.db")).unwrap();

    let mut reasons = Vec::new();
    for name in [
        "unknown-package",
        "notests",
        "corrupt",
        "mismatch",
        "tinycalc",
    ] {
        let report = forge.forge_package(name, None, Some(&store)).await.unwrap();
        reasons.push((name, report.skipped.clone(), report.validated));
    }
    let expect = [
        ("unknown-package", "not on the index"),
        ("notests", "ships no tests"),
        ("corrupt", "corrupt archive"),
        ("mismatch", "checksum mismatch"),
    ];
    for ((name, skipped, validated), (want_name, want_reason)) in reasons.iter().zip(expect) {
        assert_eq!(*name, want_name);
        let reason = skipped.as_deref().unwrap_or("");
        assert!(reason.contains(want_reason), "{name}: {reason:?}");
        assert_eq!(*validated, 0);
    }
    let (_, skipped, validated) = &reasons[4];
    assert!(skipped.is_none(), "tinycalc skipped: {skipped:?}");
    assert_eq!(*validated, 2);

    // The client spoke the simple API (PEP 691 JSON) with GETs only.
    {
        let seen = server.requests.lock().unwrap();
        let index = seen
            .iter()
            .find(|r| r.path == "/simple/unknown-package/")
            .expect("index page asked for");
        assert!(
            index
                .header("accept")
                .unwrap_or("")
                .contains("application/vnd.pypi.simple.v1+json")
        );
        assert!(seen.iter().all(|r| r.method == "GET" && r.body.is_empty()));
    }

    // Only whole, validated tasks are stored; the log explains every package.
    let tasks = store.all(None).unwrap();
    assert_eq!(tasks.len(), 2);
    assert!(
        tasks
            .iter()
            .all(|t| t.package == "tinycalc" && !t.fail_to_pass.is_empty())
    );
    let log = store.forge_log().unwrap();
    assert_eq!(log.len(), 5);
    assert_eq!(log.iter().filter(|e| e.status == "skipped").count(), 4);
    assert!(!cache.path().join("sdists/mismatch-1.0.partial").exists());
    assert!(!cache.path().join("sdists/mismatch-1.0.tar.gz").exists());
    for t in &tasks {
        assert_statement_is_clean(t);
    }

    // A task whose image is gone (gc, recipe change) is pointed at a rebuilt one.
    let mut stale = tasks[0].clone();
    let good_image = stale.image.clone();
    stale.image = "agentao/env-tinycalc:gone".into();
    store.put(&stale).unwrap();
    let prepared = forge.prepare_store(&store).await.unwrap();
    assert_eq!(prepared.len(), 1);
    assert_eq!(prepared[0].2, good_image);
    assert_eq!(prepared[0].3, 1, "only the stale task changed");
    assert_eq!(
        store.get(&stale.instance_id).unwrap().unwrap().image,
        good_image
    );
    assert!(engine.image_exists(&good_image).await.unwrap());
    assert_no_containers(&run, 20);
}

#[tokio::test]
async fn tasks_forged_from_a_real_pypi_package_hold_up_in_fresh_containers() {
    let engine = engine().await;
    base_image(&engine).await;
    let run = run_id("forge-pypi");
    // The sdist and wheel caches are shared with the CLI, so reruns skip the downloads.
    let mut cfg = ForgeConfig::new(&agentao::config::default_cache_dir());
    cfg.per_package = 5;
    cfg.max_candidates = 30;
    cfg.workers = 2;
    cfg.run_id = run.clone();
    cfg.index_url = std::env::var("PIP_INDEX_URL").ok();
    let forge = Forge::new(&engine, cfg).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = TaskStore::open(&dir.path().join("tasks.db")).unwrap();
    let report = forge
        .forge_package("idna", Some("3.20"), Some(&store))
        .await
        .unwrap();
    assert!(report.skipped.is_none(), "{report:?}");
    let tasks = store.all(None).unwrap();
    assert_eq!(tasks.len(), 5, "{report:?}");

    // The validator's own time limit: PASS_TO_PASS widened to whole F2P files runs thousands
    // of idna's UTS #46 tests.
    let eval = EvalConfig {
        run_id: run.clone(),
        ..EvalConfig::default()
    };
    // A patch that changes nothing the tests see (a text file inside the package): the tests
    // then run on the buggy tree.
    let noop = "diff --git a/idna/NOOP.txt b/idna/NOOP.txt\nnew file mode 100644\n--- /dev/null\n+++ b/idna/NOOP.txt\n@@ -0,0 +1 @@\n+noop\n";
    for task in &tasks {
        assert_statement_is_clean(task);
        assert!(task.image.starts_with("agentao/env-idna:3.20-"));
        let gold = evaluate(&engine, task, &task.patch, &eval).await;
        assert_eq!(
            gold.outcome,
            Outcome::Resolved,
            "{}: {}",
            task.instance_id,
            gold.log
        );
        let buggy = evaluate(&engine, task, noop, &eval).await;
        assert_eq!(buggy.outcome, Outcome::Unresolved, "{}", buggy.log);
        assert!(
            buggy.fail_to_pass.values().all(|s| !s.passed()),
            "{}: an F2P test passes without the fix: {:?}",
            task.instance_id,
            buggy.fail_to_pass
        );
        // The task's stored PASS_TO_PASS passes on the buggy tree. (The evaluation widens it
        // with the F2P files' other tests, which the bug may break too.)
        for t in &task.pass_to_pass {
            assert!(
                buggy.pass_to_pass.get(t).is_some_and(|s| s.passed()),
                "{}: stored P2P {t} does not pass on the buggy tree: {:?}",
                task.instance_id,
                buggy.pass_to_pass.get(t)
            );
        }
    }
    assert_no_containers(&run, 20);
}

static TINYCALC_TASKS: tokio::sync::OnceCell<Vec<Task>> = tokio::sync::OnceCell::const_new();

/// Tasks forged from the tinycalc fixture served by a local index (forged once per test run,
/// shared by the tests that need a forged task).
pub async fn forged_tinycalc() -> Vec<Task> {
    TINYCALC_TASKS
        .get_or_init(|| async {
            let engine = engine().await;
            base_image(&engine).await;
            let fixtures = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
            let good = sdist("tinycalc", "1.0.0", &tree(&fixtures.join("tinycalc")));
            let digest = sha(&good);
            let server = TestServer::start(move |req| match req.path.as_str() {
                "/simple/tinycalc/" => Response::new(
                    200,
                    "application/vnd.pypi.simple.v1+json",
                    serde_json::json!({"files": [{"filename": "tinycalc-1.0.0.tar.gz",
                        "url": "/files/tinycalc-1.0.0.tar.gz", "hashes": {"sha256": digest}}]})
                    .to_string(),
                ),
                "/files/tinycalc-1.0.0.tar.gz" => {
                    Response::new(200, "application/octet-stream", good.clone())
                }
                _ => Response::new(404, "text/plain", "no"),
            })
            .await;
            let cache = tempfile::tempdir().unwrap();
            let mut cfg = ForgeConfig::new(cache.path());
            cfg.index_url = Some(format!("{}/simple", server.url));
            cfg.per_package = 3;
            cfg.max_candidates = 20;
            cfg.workers = 2;
            cfg.run_id = run_id("forge-shared");
            let forge = Forge::new(&engine, cfg).unwrap();
            let store = TaskStore::open(&cache.path().join("tasks.db")).unwrap();
            let report = forge
                .forge_package("tinycalc", None, Some(&store))
                .await
                .unwrap();
            assert!(report.skipped.is_none(), "{report:?}");
            let tasks = store.all(None).unwrap();
            // Every stored task gets Cerebro's predicted difficulty, read from its fix.
            for t in &tasks {
                let d = t
                    .predicted_difficulty
                    .as_ref()
                    .expect("a predicted difficulty");
                assert!(d.head == "fix" && d.beta.is_finite(), "{d:?}");
            }
            tasks
        })
        .await
        .clone()
}

#[tokio::test]
async fn the_issue_writer_is_used_only_when_its_text_does_not_leak() {
    use agentao::forge::statement::rewrite;
    use agentao::llm::{Budget, LlmClient, LlmConfig};
    let answers = std::sync::Arc::new(std::sync::Mutex::new(vec![
        // Second answer: quotes the buggy line.
        "Title: add is wrong\n\nThe code does `return a - b` so add(1, 2) gives -1.".to_owned(),
        // First answer: clean.
        "Title: add(1, 2) returns -1\n\nCalling tinycalc.add(1, 2) gives -1; tests/test_calc.py::test_add expects 3.".to_owned(),
    ]));
    let queue = answers.clone();
    let server = TestServer::start(move |_| {
        let text = queue.lock().unwrap().pop().unwrap_or_default();
        Response::new(
            200,
            "application/json",
            serde_json::json!({"choices": [{"message": {"role": "assistant", "content": text}}]})
                .to_string(),
        )
    })
    .await;
    let llm = LlmClient::new(LlmConfig::new(&format!("{}/v1", server.url), "gpt-4o-mini"));
    let secrets = Secrets {
        file: "tinycalc/__init__.py",
        lines: vec!["    return a - b", "    return a + b"],
    };
    let template = "tinycalc 1.0.0: test_add fails: assert -1 == 3";
    let mut budget = Budget::new(1.0);
    let (clean, used) = rewrite(&llm, "tinycalc", template, &secrets, &mut budget).await;
    assert!(
        used && clean.starts_with("Title: add(1, 2) returns -1"),
        "{clean}"
    );
    let (kept, used) = rewrite(&llm, "tinycalc", template, &secrets, &mut budget).await;
    assert!(!used);
    assert_eq!(kept, template);
    // The prompt came from prompts/issue_writer.md with the template inside.
    let reqs = server.requests.lock().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    let prompt = body["messages"][0]["content"].as_str().unwrap();
    assert!(prompt.contains("never include a diff") && prompt.contains(template));
}

//! GitHub tasks that travel: a task harvested from the local GitHub (`github_server.rs`) is
//! described by the validator as its repository under the git base URL at the task's base
//! commit, with no answer in it, and a miner with its own cache materialises it from that URL
//! into the validator's own image tag, `/repo` holding the base commit's tree. A commit the
//! repository does not hold, or a URL elsewhere, is refused with a clear error.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use agentao::eval::EvalConfig;
use agentao::forge::ForgeConfig;
use agentao::github::refs::StatementBounds;
use agentao::github::{GithubClient, GithubConfig, HarvestConfig, harvest, harvest_open};
use agentao::llm::{LlmClient, LlmConfig};
use agentao::materialize::{MaterializeConfig, Materializer};
use agentao::neurons::validator::{Describer, Validator};
use agentao::sandbox::{Engine, ExecRequest, Sandbox, SandboxSpec};
use agentao::subnet::{Dendrite, Keypair};
use agentao::tasks::spec::{Exposure, Source, TaskSpec, Workspace};
use agentao::tasks::{Task, TaskStore};
use serde_json::json;

use crate::github_server::GithubFixture;
use crate::materialize::remove_image;
use crate::support::{Response, TestServer, assert_no_containers, base_image, engine, run_id};

fn harvest_config(fx: &GithubFixture, cache: &Path, run: &str) -> HarvestConfig {
    let mut forge = ForgeConfig::new(cache);
    forge.index_url = Some(format!("{}/simple", fx.url));
    forge.run_id = run.to_owned();
    forge.candidate_timeout = Duration::from_secs(120);
    HarvestConfig {
        packages: vec!["tinylib".into()],
        per_repo: 1,
        since: None,
        max_pages: 30,
        bounds: StatementBounds::default(),
        forge,
    }
}

fn client(fx: &GithubFixture, cache: &Path) -> GithubClient {
    GithubClient::new(GithubConfig::new(Some(&fx.url), Some("test-token"), cache)).unwrap()
}

/// The validator's description of `task`, through the synapse it sends (`described_synapse`,
/// which picks the describer by the task's source).
async fn described(
    engine: &Engine,
    fx: &GithubFixture,
    forge: ForgeConfig,
    task: &Task,
) -> serde_json::Value {
    let (key, _) = Keypair::generate();
    let v = Validator {
        engine: engine.clone(),
        dendrite: Dendrite::new(key),
        eval: EvalConfig::default(),
        time_limit: Duration::from_secs(300),
        judge: None,
        describer: Some(Describer {
            git_base_url: fx.git_base_url.clone(),
            ..Describer::new(forge)
        }),
        forecasts: None,
    };
    let body = v.described_synapse(task).await;
    assert!(body.bundle.is_empty(), "a pristine workspace has no bundle");
    let spec = body.spec.expect("a GitHub task is described");
    assert_eq!(spec["hash"], body.spec_hash.as_str());
    spec
}

/// Every string of a JSON value.
fn strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        serde_json::Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// No line a diff adds (the gold fix, the tests that judge it) shows in the description.
fn assert_no_answer(wire: &serde_json::Value, diffs: &[&str]) {
    let mut all = Vec::new();
    strings(wire, &mut all);
    for diff in diffs {
        for line in diff.lines() {
            let Some(added) = line.strip_prefix('+').filter(|_| !line.starts_with("+++")) else {
                continue;
            };
            let added = added.trim();
            if added.len() < 8 {
                continue;
            }
            assert!(
                all.iter().all(|s| !s.contains(added)),
                "the description carries {added:?}"
            );
        }
    }
}

/// `(mode, blob id, path)` of every file of `commit` in the bare repository.
fn tree_of(bare: &Path, commit: &str) -> BTreeMap<String, (String, String)> {
    let repo = git2::Repository::open_bare(bare).unwrap();
    let tree = repo
        .find_commit(git2::Oid::from_str(commit).unwrap())
        .unwrap()
        .tree()
        .unwrap();
    let mut out = BTreeMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |parent, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            out.insert(
                format!("{parent}{}", e.name().unwrap()),
                (format!("{:o}", e.filemode()), e.id().to_string()),
            );
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    out
}

/// The files of `/repo` in `image`, as its git index lists them (`git ls-files -s`).
async fn repo_in(engine: &Engine, image: &str, run: &str) -> BTreeMap<String, (String, String)> {
    let sb = Sandbox::start(engine, &SandboxSpec::new(image, run))
        .await
        .unwrap();
    let out = sb
        .exec(&ExecRequest::shell(
            "cd /repo && git -c safe.directory='*' ls-files -s",
        ))
        .await
        .unwrap();
    let _ = sb.remove().await;
    assert!(out.success(), "{out:?}");
    out.stdout
        .lines()
        .map(|l| {
            let (meta, path) = l.split_once('\t').unwrap();
            let mut m = meta.split_whitespace();
            let (mode, id) = (m.next().unwrap(), m.next().unwrap());
            (path.to_owned(), (mode.to_owned(), id.to_owned()))
        })
        .collect()
}

/// The miner's side: its own cache, the fixture's index, and the fixture's git base URL.
fn miner(engine: &Engine, fx: &GithubFixture, cache: &Path) -> Materializer {
    Materializer::new(
        engine.clone(),
        MaterializeConfig {
            index_url: Some(format!("{}/simple", fx.url)),
            git_base_url: fx.git_base_url.clone(),
            ..MaterializeConfig::new(cache)
        },
    )
}

/// `spec` with another source, sealed again (a validator's, or a forger's, own hash).
fn with_source(spec: &TaskSpec, source: Source) -> serde_json::Value {
    let mut s = spec.clone();
    s.source = source;
    serde_json::to_value(s.sealed()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_harvested_task_travels_as_its_repository_at_the_base_commit_into_the_validators_image() {
    let engine = engine().await;
    base_image(&engine).await;
    // Its own trees: the images this test removes are no other test's.
    let fx = GithubFixture::start_salted("github-travel closed").await;
    let run = run_id("github-travel");
    let (vcache, mcache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = TaskStore::open(&vcache.path().join("tasks.db")).unwrap();
    let cfg = harvest_config(&fx, vcache.path(), &run);
    let report = harvest(
        &engine,
        &client(&fx, vcache.path()),
        &store,
        &cfg,
        |_, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(
        report.task_ids,
        vec!["fixture-org__tinylib-3"],
        "{report:#?}"
    );
    let task = store.get("fixture-org__tinylib-3").unwrap().unwrap();
    assert_eq!(task.base_commit, fx.history.base);

    // The harvest's checkout is gone: the describer checks the base commit out again, from
    // the repository under its git base URL, and gets the task's own image.
    let checkouts = vcache.path().join("github/src");
    assert!(checkouts.is_dir());
    std::fs::remove_dir_all(&checkouts).unwrap();
    let started = Instant::now();
    let wire = described(&engine, &fx, cfg.forge.clone(), &task).await;
    let describe_seconds = started.elapsed().as_secs_f64();
    let spec = TaskSpec::from_wire(&wire).unwrap();
    let url = format!("{}/fixture-org/tinylib", fx.git_base_url);
    assert_eq!(
        spec.source,
        Source::Git {
            url: url.clone(),
            commit: fx.history.base.clone()
        }
    );
    assert_eq!(spec.workspace, Workspace::Pristine);
    assert_eq!(spec.exposure, Exposure::PublicAnswer);
    assert_eq!(spec.environment.image, task.image);
    assert!(
        task.image.starts_with(&format!(
            "agentao/env-gh-fixture-org-tinylib:{}-",
            &fx.history.base[..12]
        )),
        "{}",
        task.image
    );
    // No answer in it: neither the fix nor the tests that judge it.
    assert!(!task.patch.is_empty() && !task.test_patch.is_empty());
    assert_no_answer(&wire, &[&task.patch, &task.test_patch]);
    let text = wire.to_string();
    assert!(!text.contains("return high") && !text.contains("test_clamp_high"));

    // The miner (another cache, the same base URL) builds the validator's image itself.
    remove_image(&task.image);
    let m = miner(&engine, &fx, mcache.path());
    let got = m.from_wire(&wire, &[]).await.unwrap();
    assert!(!got.warm);
    assert_eq!(
        got.task.image, task.image,
        "the validator's tag, built by the miner"
    );
    assert!(engine.image_exists(&task.image).await.unwrap());
    assert_eq!(got.task.repo, "fixture-org/tinylib");
    assert!(got.task.bug_patch.is_empty() && got.task.patch.is_empty());
    // `/repo` is the base commit's tree, file for file (no fix, no new tests).
    let bare =
        Path::new(fx.git_base_url.strip_prefix("file://").unwrap()).join("fixture-org/tinylib");
    let base_tree = tree_of(&bare, &fx.history.base);
    assert_eq!(repo_in(&engine, &got.task.image, &run).await, base_tree);
    assert!(!base_tree.contains_key("tests/test_clamp.py"));
    let warm = m.from_wire(&wire, &[]).await.unwrap();
    assert!(warm.warm);
    eprintln!(
        "github task travels: describe (checkout again) {describe_seconds:.2}s, miner cold {:.2}s, warm {:.3}s, description {} bytes",
        got.seconds,
        warm.seconds,
        text.len()
    );

    // A commit the repository does not hold (40 hex digits, sealed anew): refused, clearly.
    let gone = "0123456789abcdef0123456789abcdef01234567";
    let tampered = with_source(
        &spec,
        Source::Git {
            url: url.clone(),
            commit: gone.into(),
        },
    );
    let err = m.from_wire(&tampered, &[]).await.unwrap_err().to_string();
    assert!(err.contains(gone) && err.contains("is not in"), "{err}");
    // A repository elsewhere than the miner's base URL: refused before anything is fetched.
    let elsewhere = with_source(
        &spec,
        Source::Git {
            url: "https://evil.invalid/fixture-org/tinylib".into(),
            commit: fx.history.base.clone(),
        },
    );
    let err = m.from_wire(&elsewhere, &[]).await.unwrap_err().to_string();
    assert!(err.contains("not under the configured base URL"), "{err}");
    // The description as sent, with its commit changed but not its hash: refused too.
    let mut forged = wire.clone();
    forged["source"]["commit"] = json!(gone);
    let err = m.from_wire(&forged, &[]).await.unwrap_err().to_string();
    assert!(err.contains("hash mismatch"), "{err}");
    assert_no_containers(&run, 30);
}

/// A scripted OpenAI-compatible model that writes the open issue's checklist.
async fn checklist_writer() -> TestServer {
    TestServer::start(|_| {
        let content =
            serde_json::to_string(&["mean([]) raises ValueError", "the error names the list"])
                .unwrap();
        let answer = json!({"id": "m", "object": "chat.completion", "created": 0,
            "model": "gpt-4o-mini", "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}});
        Response::new(200, "application/json", answer.to_string())
    })
    .await
}

/// An open issue (`exposure = none`, the kind finney lets travel): described at HEAD, the
/// harvest's checkout reused, materialised by a miner into the same image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_issue_task_travels_at_the_head_it_was_made_at() {
    let engine = engine().await;
    base_image(&engine).await;
    let fx = GithubFixture::start_salted("github-travel open").await;
    let model = checklist_writer().await;
    let llm = LlmClient::new(LlmConfig::new(&format!("{}/v1", model.url), "gpt-4o-mini"));
    let run = run_id("github-travel-open");
    let (vcache, mcache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = TaskStore::open(&vcache.path().join("tasks.db")).unwrap();
    let cfg = harvest_config(&fx, vcache.path(), &run);
    let gh = client(&fx, vcache.path());
    let report = harvest_open(&engine, &gh, &llm, &store, &cfg, |_, _, _| {})
        .await
        .unwrap();
    assert_eq!(
        report.task_ids,
        vec!["fixture-org__tinylib-9"],
        "{report:#?}"
    );
    let task = store.get("fixture-org__tinylib-9").unwrap().unwrap();

    let wire = described(&engine, &fx, cfg.forge.clone(), &task).await;
    let spec = TaskSpec::from_wire(&wire).unwrap();
    assert_eq!(
        spec.source,
        Source::Git {
            url: format!("{}/fixture-org/tinylib", fx.git_base_url),
            commit: fx.history.fix.clone()
        }
    );
    assert_eq!(spec.exposure, Exposure::None);
    assert_eq!(spec.workspace, Workspace::Pristine);
    assert_eq!(spec.environment.image, task.image);

    remove_image(&task.image);
    let got = miner(&engine, &fx, mcache.path())
        .from_wire(&wire, &[])
        .await
        .unwrap();
    assert_eq!(got.task.image, task.image);
    assert!(engine.image_exists(&task.image).await.unwrap());
    assert_no_containers(&run, 30);
}

//! The GitHub harvest against a local GitHub (`github_server.rs`): recorded real exchanges
//! replayed with their headers, and a repository built with git2 whose fixing pull request
//! must become a validated task, in the real harness, while every other candidate is skipped
//! with its reason.

use std::time::{Duration, Instant};

use agentao::eval::{EvalConfig, Outcome, evaluate};
use agentao::forge::ForgeConfig;
use agentao::github::refs::StatementBounds;
use agentao::github::{GithubClient, GithubConfig, HarvestConfig, harvest};
use agentao::tasks::TaskStore;

use crate::github_server::GithubFixture;
use crate::support::{assert_no_containers, base_image, engine, run_id};

fn config(fx: &GithubFixture, cache: &std::path::Path, run: &str) -> HarvestConfig {
    let mut forge = ForgeConfig::new(cache);
    forge.index_url = Some(format!("{}/simple", fx.url));
    forge.run_id = run.to_owned();
    forge.candidate_timeout = Duration::from_secs(120);
    HarvestConfig {
        packages: ["nogithub", "gonepkg", "paginated", "tinylib"]
            .map(str::to_owned)
            .to_vec(),
        per_repo: 5,
        since: None,
        max_pages: 30,
        bounds: StatementBounds::default(),
        forge,
    }
}

fn client(fx: &GithubFixture, cache: &std::path::Path) -> GithubClient {
    GithubClient::new(GithubConfig::new(Some(&fx.url), Some("test-token"), cache)).unwrap()
}

#[tokio::test]
async fn a_harvest_yields_a_validated_task_skips_the_rest_with_reasons_and_a_rerun_costs_no_quota()
{
    let engine = engine().await;
    base_image(&engine).await;
    let fx = GithubFixture::start().await;
    let cache = tempfile::tempdir().unwrap();
    let store = TaskStore::open(&cache.path().join("tasks.db")).unwrap();
    let run = run_id("github-harvest");
    let cfg = config(&fx, cache.path(), &run);

    let started = Instant::now();
    let gh = client(&fx, cache.path());
    let mut seen = Vec::new();
    let report = harvest(&engine, &gh, &store, &cfg, |p, done, total| {
        seen.push((p.to_owned(), done, total))
    })
    .await
    .unwrap();
    let first_seconds = started.elapsed().as_secs_f64();
    assert_eq!(seen.len(), 4, "progress after every package: {seen:?}");

    // One task, validated: the fixing pull request #3 of issue #1.
    assert_eq!(
        report.task_ids,
        vec!["fixture-org__tinylib-3"],
        "{report:#?}"
    );
    let stored = store.all(None).unwrap();
    assert_eq!(stored.len(), 1, "only validated tasks are stored");
    let task = &stored[0];
    assert_eq!(task.source, "github");
    assert_eq!(task.exposure, Some(agentao::tasks::Exposure::PublicAnswer));
    assert_eq!(
        task.issue_url,
        "https://github.com/fixture-org/tinylib/issues/1"
    );
    assert_eq!(task.created_at, "2026-01-03T10:30:00Z");
    assert_eq!(task.base_commit, fx.history.base);
    assert!(
        task.predicted_difficulty.is_some(),
        "Cerebro's prediction, as forged tasks get"
    );
    assert_eq!(
        task.fail_to_pass,
        vec!["tests/test_clamp.py::test_clamp_high"]
    );
    assert_eq!(
        task.pass_to_pass,
        vec!["tests/test_clamp.py::test_clamp_inside"]
    );
    assert!(task.patch.contains("tinylib/__init__.py") && !task.patch.contains("tests/"));
    assert!(
        task.test_patch.contains("tests/test_clamp.py")
            && !task.test_patch.contains("tinylib/__init__.py")
    );
    // The statement is the issue and its first comment, never the pull request's text.
    assert!(
        task.problem_statement
            .starts_with("clamp() returns values above the upper bound")
    );
    assert!(task.problem_statement.contains("clamp(5, -3, -1) gives 5"));
    assert!(!task.problem_statement.contains("upper branch returned"));

    // The gold patch resolves it in the harness, in a fresh container; no fix does not.
    let eval_cfg = EvalConfig {
        run_id: run.clone(),
        ..EvalConfig::default()
    };
    let gold = evaluate(&engine, task, &task.patch, &eval_cfg).await;
    assert_eq!(gold.outcome, Outcome::Resolved, "{}", gold.log);
    let noop = "diff --git a/tinylib/__init__.py b/tinylib/__init__.py\n--- a/tinylib/__init__.py\n+++ b/tinylib/__init__.py\n@@ -1,3 +1,3 @@\n-\"\"\"A tiny library: the GitHub harvest's fixture.\"\"\"\n+\"\"\"A tiny library.\"\"\"\n \n \n";
    let wrong = evaluate(&engine, task, noop, &eval_cfg).await;
    assert_eq!(wrong.outcome, Outcome::Unresolved, "{}", wrong.log);

    // Every other candidate and package is skipped with its reason, and the harvest went on.
    let reason = |item: &str, repo: &str| {
        report
            .skipped
            .iter()
            .find(|s| s.item == item && (s.repo == repo || s.package == repo))
            .map(|s| s.reason.clone())
            .unwrap_or_else(|| panic!("no skip for {repo} {item}: {:#?}", report.skipped))
    };
    assert!(reason("", "nogithub").contains("no GitHub repository"));
    assert!(reason("", "fixture-org/deleted").contains("404"));
    assert!(reason("#4", "fixture-org/tinylib").contains("no test_patch"));
    assert!(reason("#5", "fixture-org/tinylib").contains("malformed"));
    assert!(reason("#6", "fixture-org/tinylib").contains("is not in"));
    assert_eq!(report.candidates, 4, "#3..#6 close an issue; #7 does not");
    assert_eq!(report.merged_prs, 5);
    let log = store.forge_log().unwrap();
    for item in ["#4", "#5", "#6"] {
        assert!(
            log.iter()
                .any(|e| e.version == item && e.status == "skipped" && !e.reason.is_empty())
        );
    }
    assert!(log.iter().any(|e| e.version == "#3" && e.status == "ok"));

    // Pagination: the five recorded pages, and the four pages of the fixture repository.
    let hits = fx.hits();
    for p in 2..=5 {
        let want = format!("/repositories/1000/issues?per_page=3&page={p}");
        assert!(
            hits.iter().any(|h| h.path == want && h.status == 200),
            "{want} not followed"
        );
    }
    for p in 2..=4 {
        assert!(
            hits.iter()
                .any(|h| h.path.starts_with("/repositories/4242/issues")
                    && h.path.ends_with(&format!("page={p}"))
                    && h.status == 200),
            "page {p}"
        );
    }
    // The 403 rate-limit reply was waited out, then answered.
    let limited: Vec<usize> = hits
        .iter()
        .enumerate()
        .filter(|(_, h)| h.status == 403)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(limited.len(), 1, "{hits:#?}");
    let retried = &hits[limited[0] + 1];
    assert_eq!(
        (retried.path.as_str(), retried.status),
        (hits[limited[0]].path.as_str(), 200)
    );
    let first = gh.usage();
    assert_eq!(first.rate_waits, 1);
    let first_github: Vec<_> = hits.iter().filter(|h| h.is_github()).cloned().collect();
    assert_eq!(
        first.requests as usize,
        first_github.len(),
        "the client counts what the server saw"
    );

    // A second harvest of the unchanged repositories: every answer a 304, no quota spent.
    let before = fx.hits().len();
    let again = client(&fx, cache.path());
    let started = Instant::now();
    let second = harvest(&engine, &again, &store, &cfg, |_, _, _| {})
        .await
        .unwrap();
    let second_seconds = started.elapsed().as_secs_f64();
    assert_eq!(second.task_ids, report.task_ids);
    let rerun: Vec<_> = fx.hits()[before..].to_vec();
    assert!(!rerun.is_empty());
    assert!(
        rerun.iter().all(|h| h.is_github() && h.status == 304),
        "{rerun:#?}"
    );
    let usage = again.usage();
    assert_eq!(usage.requests as usize, rerun.len());
    assert_eq!(usage.quota, 0, "{usage:?}");
    assert_eq!(usage.not_modified, usage.requests);
    assert_eq!(store.all(None).unwrap().len(), 1);

    println!(
        "harvest yield: {} merged PRs, {} candidates, {} task(s) ({:.0} % of candidates); \
         first run {} API requests ({:.1} per task) in {:.1} s ({:.1} s per task); \
         rerun {} requests, {} answered 304, {} against the quota, {:.1} s",
        report.merged_prs,
        report.candidates,
        report.task_ids.len(),
        100.0 * report.task_ids.len() as f64 / report.candidates as f64,
        first.requests,
        first.requests as f64 / report.task_ids.len() as f64,
        first_seconds,
        first_seconds / report.task_ids.len() as f64,
        usage.requests,
        usage.not_modified,
        usage.quota,
        second_seconds
    );
    assert_no_containers(&run, 30);
}

/// The client alone (no Docker): `Link` pages followed, a 403 rate-limit reply waited out
/// until its reset, a second pass answered by 304s from the ETag cache without quota.
#[tokio::test]
async fn the_client_follows_links_waits_out_rate_limits_and_revalidates_with_etags() {
    #[derive(serde::Deserialize)]
    struct Item {
        number: u64,
    }
    let fx = GithubFixture::start().await;
    let cache = tempfile::tempdir().unwrap();
    let gh = client(&fx, cache.path());
    // The five recorded pages of octokit/fixtures' paginate-issues, headers as recorded.
    let recorded: Vec<Item> = gh
        .paginate(
            "/repos/octokit-fixture-org/paginate-issues/issues?per_page=3",
            30,
        )
        .await
        .unwrap();
    let numbers: Vec<u64> = recorded.iter().map(|i| i.number).collect();
    assert_eq!(numbers, (1..=13).rev().collect::<Vec<_>>());
    // The fixture repository's four pages; page 2 answers 403 with a reset 2 s ahead first.
    let started = Instant::now();
    let items: Vec<Item> = gh
        .paginate(
            "/repos/fixture-org/tinylib/issues?state=closed&per_page=100",
            30,
        )
        .await
        .unwrap();
    assert_eq!(items.len(), 8);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the reset was not waited for"
    );
    let first = gh.usage();
    assert_eq!(
        (first.requests, first.not_modified, first.rate_waits),
        (10, 0, 1)
    );
    assert!(fx.hits().iter().any(|h| h.status == 403));
    // The token goes to the configured API as a bearer.
    assert!(fx.hits().iter().all(|h| h.auth == "Bearer test-token"));
    // Again, with a fresh client on the same cache: only 304s, nothing against the quota.
    let before = fx.hits().len();
    let again = client(&fx, cache.path());
    let same: Vec<Item> = again
        .paginate(
            "/repos/fixture-org/tinylib/issues?state=closed&per_page=100",
            30,
        )
        .await
        .unwrap();
    assert_eq!(same.len(), 8);
    let u = again.usage();
    assert_eq!((u.requests, u.not_modified, u.quota), (4, 4, 0));
    assert!(fx.hits()[before..].iter().all(|h| h.status == 304));
    // A repository that is gone is a 404 error, not a panic or an empty list.
    let gone = again
        .get("/repos/fixture-org/deleted", "application/vnd.github+json")
        .await;
    assert!(gone.unwrap_err().to_string().contains("404"));
    // It has no ETag: the 404 is remembered for a day instead of asked again.
    let asked = fx.hits().len();
    let gone = again
        .get("/repos/fixture-org/deleted", "application/vnd.github+json")
        .await;
    assert!(gone.unwrap_err().to_string().contains("404"));
    assert_eq!(fx.hits().len(), asked);
}

fn agentao_cli(
    fx: &GithubFixture,
    data: &std::path::Path,
    cache: &std::path::Path,
) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_agentao"));
    c.env("AGENTAO_LOG_FORMAT", "json")
        .env_remove("RUST_LOG")
        .env("AGENTAO_DATA_DIR", data)
        .env("AGENTAO_CACHE_DIR", cache)
        .env("GITHUB_API_URL", &fx.url)
        .env("GITHUB_TOKEN", "test-token");
    c
}

/// `github propose`: the dry run prints branch, commit and payload and sends nothing; the real
/// run pushes the branch to the fork with git2 and opens the pull request, both read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_dry_run_prints_the_payload_and_a_real_run_opens_the_pull_request() {
    use agentao::dataset::{Record, RecordStore};
    use agentao::github::refs::split_diff;
    use agentao::tasks::Task;
    let fx = GithubFixture::start().await;
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let gh = client(&fx, cache.path());
    let diff = gh
        .get(
            "/repos/fixture-org/tinylib/pulls/3",
            "application/vnd.github.diff",
        )
        .await
        .unwrap()
        .body;
    let fix = split_diff(&diff).unwrap().patch;
    // An open-issue task (no gold patch), and the patches miners sent for it.
    let task: Task = serde_json::from_value(serde_json::json!({
        "instance_id": "fixture-org__tinylib-1", "repo": "fixture-org/tinylib",
        "base_commit": fx.history.base, "patch": "",
        "problem_statement": "clamp() returns values above the upper bound\n\nclamp(15, 0, 10) returns 15.",
        "FAIL_TO_PASS": [], "PASS_TO_PASS": ["tests/test_basic.py::test_clamp_low"],
        "source": "github", "exposure": "none",
        "issue_url": "https://github.com/fixture-org/tinylib/issues/1"
    }))
    .unwrap();
    TaskStore::open(&data.path().join("tasks.db"))
        .unwrap()
        .put(&task)
        .unwrap();
    let mut records = RecordStore::open(&data.path().join("dataset/records.jsonl")).unwrap();
    for (hotkey, resolved, score) in [
        ("5Flower", true, 0.4),
        ("5FwinnerHotkey", true, 0.9),
        ("5Funresolved", false, 1.0),
    ] {
        let mut r = Record::for_task(&task);
        r.miner_hotkey = hotkey.into();
        r.model_patch = fix.clone();
        r.resolved = resolved;
        r.final_score = score;
        records.append(&mut r).unwrap();
    }
    let args = ["github", "propose", "--task", "fixture-org__tinylib-1"];

    let out = agentao_cli(&fx, data.path(), cache.path())
        .args(args)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dry: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(dry["branch"], "agentao/fixture-org__tinylib-1");
    assert_eq!(dry["commit"].as_str().unwrap().len(), 40);
    assert_eq!(dry["dry_run"], true);
    let body = dry["payload"]["body"].as_str().unwrap();
    assert!(
        body.contains("5FwinnerHotkey") && body.contains("#1") && body.contains("0.900"),
        "{body}"
    );
    assert!(
        dry["payload"]["title"]
            .as_str()
            .unwrap()
            .starts_with("Fix #1: clamp()")
    );
    assert!(
        fx.hits()
            .iter()
            .all(|h| !h.path.ends_with("/forks") && !h.path.ends_with("/pulls")),
        "a dry run sends nothing"
    );

    let out = agentao_cli(&fx, data.path(), cache.path())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sent["fork"], "miner-fork/tinylib");
    let number = sent["pr_number"].as_u64().unwrap();
    // Read back: the pull request from the API, the branch from the fork.
    let url = format!("/repos/fixture-org/tinylib/pulls/{number}");
    let pr: serde_json::Value = gh
        .get(&url, "application/vnd.github+json")
        .await
        .unwrap()
        .json(&url)
        .unwrap();
    assert_eq!(
        pr["head"]["label"],
        "miner-fork:agentao/fixture-org__tinylib-1"
    );
    assert_eq!(pr["base"]["ref"], "main");
    assert!(pr["body"].as_str().unwrap().contains("5FwinnerHotkey"));
    let fork = git2::Repository::open_bare(&fx.fork).unwrap();
    let head = fork
        .refname_to_id("refs/heads/agentao/fixture-org__tinylib-1")
        .unwrap();
    assert_eq!(head.to_string(), sent["commit"].as_str().unwrap());
    let commit = fork.find_commit(head).unwrap();
    assert_eq!(commit.parent_id(0).unwrap().to_string(), fx.history.base);
    let blob = commit
        .tree()
        .unwrap()
        .get_path(std::path::Path::new("tinylib/__init__.py"))
        .unwrap();
    let text = String::from_utf8(fork.find_blob(blob.id()).unwrap().content().to_vec()).unwrap();
    assert!(text.contains("return high"), "{text}");
    assert!(
        fx.hits()
            .iter()
            .filter(|h| h.path.ends_with("/pulls") || h.path.ends_with("/forks"))
            .all(|h| h.auth == "Bearer test-token")
    );

    // A task whose fix is public is never proposed.
    let mut public = task.clone();
    public.instance_id = "fixture-org__tinylib-3".into();
    public.exposure = Some(agentao::tasks::Exposure::PublicAnswer);
    TaskStore::open(&data.path().join("tasks.db"))
        .unwrap()
        .put(&public)
        .unwrap();
    let out = agentao_cli(&fx, data.path(), cache.path())
        .args([
            "github",
            "propose",
            "--task",
            "fixture-org__tinylib-3",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("public answer"));
}

/// `agentao tasks harvest` end to end through the binary: `--since` leaves out the pull
/// request merged before it, and each candidate skipped is a log record with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harvest_command_logs_every_skipped_candidate_with_its_reason() {
    let engine = engine().await;
    base_image(&engine).await;
    let fx = GithubFixture::start().await;
    let data = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let out = agentao_cli(&fx, data.path(), cache.path())
        .env("PIP_INDEX_URL", format!("{}/simple", fx.url))
        .args([
            "tasks",
            "harvest",
            "--since",
            "2026-01-04",
            "--per-repo",
            "1",
        ])
        .args([
            "--package",
            "nogithub",
            "--package",
            "gonepkg",
            "--package",
            "tinylib",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["task_ids"], serde_json::json!([]));
    assert_eq!(
        report["candidates"], 3,
        "#3 was merged before --since: {report}"
    );
    let skipped: Vec<(String, String)> = report["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["item"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(skipped.len(), 5, "{skipped:?}");
    // One log record per skip, carrying the same reason.
    let logged: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "harvest: skipped")
        .collect();
    assert_eq!(logged.len(), skipped.len(), "{stderr}");
    for (item, reason) in &skipped {
        assert!(
            logged.iter().any(|v| v["fields"]["item"] == item.as_str()
                && v["fields"]["reason"] == reason.as_str())
        );
    }
    assert!(stderr.contains("0 tasks from 3 candidates"), "{stderr}");
}

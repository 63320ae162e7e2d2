//! The real binary: exit codes, one-line errors, Ctrl-C.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{assert_no_containers, containers_of, readable_lines, run_id};

fn agentao() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentao"));
    c.env("AGENTAO_LOG_FORMAT", "json").env_remove("RUST_LOG");
    c
}

fn error_lines(stderr: &[u8]) -> Vec<String> {
    readable_lines(stderr)
        .into_iter()
        .filter(|l| l.starts_with("error:"))
        .collect()
}

#[test]
fn an_invalid_flag_exits_2() {
    let out = agentao()
        .args(["--no-such-flag", "doctor"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(error_lines(&out.stderr).len(), 1);
}

#[test]
fn a_missing_image_is_one_line_and_exit_2() {
    let run = run_id("cli-missing");
    let out = agentao()
        .args([
            "--run-id",
            &run,
            "sandbox",
            "--image",
            "agentao/nope:0",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let errors = error_lines(&out.stderr);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("agentao/nope:0"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn a_dead_docker_socket_is_one_line_and_nonzero() {
    let out = agentao()
        .args(["sandbox", "--", "true"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let errors = error_lines(&out.stderr);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("cannot reach the Docker engine"));
}

#[test]
fn a_failing_command_exits_nonzero_and_output_streams_through() {
    let run = run_id("cli-exit");
    let out = agentao()
        .args([
            "--run-id",
            &run,
            "sandbox",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 4",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exited with 4"));
    assert_no_containers(&run, 5);
}

#[test]
fn ctrl_c_removes_the_container_and_exits_130() {
    let run = run_id("cli-sigint");
    let child = agentao()
        .args([
            "--run-id",
            &run,
            "sandbox",
            "--timeout",
            "120",
            "--",
            "sleep",
            "100",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while containers_of(&run).is_empty() {
        assert!(Instant::now() < deadline, "the sandbox never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    assert_no_containers(&run, 5);
}

#[test]
fn the_env_examples_document_every_variable() {
    let root = env!("CARGO_MANIFEST_DIR");
    let miner = std::fs::read_to_string(format!("{root}/.env.miner_example")).unwrap();
    let validator = std::fs::read_to_string(format!("{root}/.env.validator_example")).unwrap();
    for var in agentao::config::env_vars::ALL {
        let mentioned = |text: &str| {
            text.lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{var}=")))
        };
        assert!(
            mentioned(&miner) || mentioned(&validator),
            "{var} is in neither .env example"
        );
    }
}

#[tokio::test]
async fn an_eval_killed_midway_resumes_without_redoing_finished_instances() {
    let engine = crate::support::engine().await;
    let task = crate::eval::fixture_task(&engine).await;
    let dir = tempfile::tempdir().unwrap();
    let (tasks, preds) = (
        dir.path().join("tasks.jsonl"),
        dir.path().join("preds.jsonl"),
    );
    let (mut t_lines, mut p_lines) = (String::new(), String::new());
    for i in 0..4 {
        let mut t = task.clone();
        t.instance_id = format!("tinycalc__{i}");
        t_lines += &format!("{}\n", serde_json::to_string(&t).unwrap());
        p_lines += &format!(
            "{}\n",
            serde_json::json!({"instance_id": t.instance_id, "model_name_or_path": "gold", "model_patch": t.patch})
        );
    }
    std::fs::write(&tasks, t_lines).unwrap();
    std::fs::write(&preds, p_lines).unwrap();
    let run_dir = dir.path().join("run");
    let run = run_id("cli-resume");
    let args = |run: &str| {
        let mut c = agentao();
        c.args(["--run-id", run, "eval", "--workers", "1", "--tasks"])
            .arg(&tasks)
            .arg("--predictions")
            .arg(&preds)
            .arg("--run-dir")
            .arg(&run_dir);
        c
    };
    let mut child = args(&run)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let verdicts = run_dir.join("verdicts");
    let count = || {
        std::fs::read_dir(&verdicts)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while count() == 0 {
        assert!(Instant::now() < deadline, "no verdict appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL: no clean-up code runs in the child
    child.wait().unwrap();
    let finished = count();
    assert!(finished < 4, "the run finished before it could be killed");

    let out = args(&run_id("cli-resume2")).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["resolved_instances"], 4);
    assert_eq!(report["evaluated_now"], 4 - finished as u64);
    // The killed run's containers are reaped at a start: the second run's, or (for one the
    // engine was still creating for the killed child's pool when that run's reaper looked)
    // the next one.
    agentao::sandbox::reap_leftovers(&engine).await.unwrap();
    assert_no_containers(&run, 10);
}

/// Issue 13: duplicate instance ids in one predictions file made the stored verdict flip on
/// every rerun, and an empty file exited 0. Both are bad input: exit 2, one line.
#[test]
fn duplicate_or_missing_predictions_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks.jsonl");
    std::fs::write(
        &tasks,
        serde_json::json!({"instance_id": "t1", "repo": "pypi/x", "patch": "p",
            "problem_statement": "s", "FAIL_TO_PASS": ["a"], "PASS_TO_PASS": [],
            "image": "agentao/none:1"})
        .to_string()
            + "\n",
    )
    .unwrap();
    let gold =
        serde_json::json!({"instance_id": "t1", "model_name_or_path": "m", "model_patch": "gold"});
    let noop =
        serde_json::json!({"instance_id": "t1", "model_name_or_path": "m", "model_patch": ""});
    let other =
        serde_json::json!({"instance_id": "t2", "model_name_or_path": "m", "model_patch": ""});
    for (name, content, says) in [
        (
            "dup.jsonl",
            format!("{gold}\n\n{other}\n{noop}\n"),
            "instance t1 is predicted twice (line 1 and line 4)",
        ),
        (
            "dup.json",
            serde_json::json!([gold, noop]).to_string(),
            "instance t1 is predicted twice (entry 1 and entry 2)",
        ),
        ("empty.jsonl", String::new(), "no predictions"),
        ("blank.jsonl", "\n  \n".to_owned(), "no predictions"),
        ("empty.json", "[]".to_owned(), "no predictions"),
    ] {
        let preds = dir.path().join(name);
        std::fs::write(&preds, content).unwrap();
        let out = agentao()
            .arg("eval")
            .arg("--tasks")
            .arg(&tasks)
            .arg("--predictions")
            .arg(&preds)
            .arg("--run-dir")
            .arg(dir.path().join("run"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        let lines = readable_lines(&out.stderr);
        assert_eq!(lines.len(), 1, "{name}: {stderr}");
        assert!(lines[0].starts_with("error: "), "{name}: {stderr}");
        assert!(lines[0].contains(says), "{name}: {stderr}");
        assert!(!dir.path().join("run").exists(), "{name}: nothing was run");
    }
}

/// Every `agentao …` command a message or hint names (in `src/`, outside comments) exists:
/// `agentao <words> --help` exits 0.
#[test]
fn every_command_a_hint_names_exists() {
    let mut commands = std::collections::BTreeSet::new();
    let mut stack = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src"
    ))];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for quoted in line.split('`').skip(1).step_by(2) {
                    let Some(rest) = quoted.strip_prefix("agentao ") else {
                        continue;
                    };
                    let words: Vec<&str> = rest
                        .split_whitespace()
                        .take_while(|w| !w.starts_with('-') && !w.contains(['<', '.', '/']))
                        .collect();
                    commands.insert(words.join(" "));
                }
            }
        }
    }
    assert!(commands.contains("subnet create-hotkey"), "{commands:?}");
    for command in &commands {
        let out = agentao()
            .args(command.split(' '))
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`agentao {command} --help` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

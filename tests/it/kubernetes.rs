//! The Kubernetes backend (`sandbox::KubeCluster`) against scripted API exchanges
//! (`tests/fixtures/kube/`, served by `kube_replay.rs`): what the client sends (the pod's
//! limits, labels and privileges, the isolation policy, exec argv and stdin) and what it does
//! with the answers (a name taken, a watch gone stale, an image missing, a dead owner).
//! No live cluster is involved anywhere.

use std::time::Duration;

use agentao::sandbox::{
    BackendKind, ExecRequest, ExecStatus, KubeBackend, KubeCluster, Sandbox, SandboxError,
    SandboxSpec,
};

use crate::kube_replay::Replay;

const NS: &str = "agentao-test";
const IMAGE: &str = "registry.example/agentao/base:latest";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `<boot>:<pid>:<start ticks>` of this process, as `agentao.owner` holds it (`:` → `.`).
fn my_owner() -> String {
    let boot: String = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .chars()
        .take(8)
        .collect();
    let pid = std::process::id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let ticks = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_owned();
    format!("{boot}.{pid}.{ticks}")
}

/// The vars the fixtures use besides those bound from requests.
fn vars() -> Vec<(&'static str, String)> {
    let owner = my_owner();
    let (boot, rest) = owner.split_once('.').unwrap();
    let pid = rest.split('.').next().unwrap();
    vec![
        ("owner", owner.clone()),
        // This machine, this pid, another start time: a process that is gone.
        ("dead_owner", format!("{boot}.{pid}.1")),
        ("other_machine", "0ther000.4242.17".to_owned()),
        ("future", (now() + 3600).to_string()),
        ("past", (now() - 3600).to_string()),
        ("deadline", (now() + 600).to_string()),
    ]
}

fn spec() -> SandboxSpec {
    let mut spec = SandboxSpec::new(IMAGE, "run-42");
    spec.limits.memory_mb = 1536;
    spec.limits.cpus = 1.5;
    spec.limits.wall = Duration::from_secs(600);
    spec.limits.tmp_mb = 256;
    spec.env = vec!["PYTHONDONTWRITEBYTECODE=1".to_owned()];
    spec.workdir = Some("/repo".to_owned());
    spec
}

async fn cluster(replay: &Replay) -> KubeCluster {
    KubeCluster::connect(Some(&replay.url), NS)
        .await
        .unwrap()
        .with_launch_timeout(Duration::from_secs(20))
}

/// The body of the `n`th request, which must be a pod creation.
fn created_pod(replay: &Replay, n: usize) -> serde_json::Value {
    let got = &replay.received()[n];
    assert_eq!(
        (got.method.as_str(), got.path.as_str()),
        ("POST", "/api/v1/namespaces/agentao-test/pods")
    );
    got.body.clone()
}

#[tokio::test]
async fn launch_creates_the_policy_and_the_pod_and_waits_until_it_runs() {
    let replay = Replay::start("launch.json", &vars()).await;
    let name = cluster(&replay)
        .await
        .launch(&spec(), Duration::ZERO)
        .await
        .unwrap();
    replay.finish();
    assert_eq!(Some(name.clone()), replay.var("pod"));
    assert!(name.starts_with("agentao-run-42-") && name.len() == "agentao-run-42-".len() + 8);
    let policy = &replay.received()[0].body;
    assert_eq!(policy["spec"]["egress"], serde_json::json!([]));
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    let pod = created_pod(&replay, 1);
    let deadline: u64 = pod["metadata"]["labels"]["agentao.deadline"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(deadline.abs_diff(now() + 600) <= 5, "deadline {deadline}");
    assert_eq!(pod["metadata"]["labels"]["agentao.owner"], my_owner());
    let limits = &pod["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(
        (limits["cpu"].as_str(), limits["memory"].as_str()),
        (Some("1500m"), Some("1536Mi"))
    );
    // The watch resumes from the creation's resourceVersion.
    let watch = &replay.received()[2];
    assert!(
        watch
            .query
            .contains(&("resourceVersion".into(), "1001".into()))
    );
}

#[tokio::test]
async fn a_pool_pod_lives_longer_and_says_so() {
    // Same exchanges, but the pod is created for the warm pool: the idle time lengthens the
    // wall clock, and the fixture's checks (600 s) must then fail.
    let replay = Replay::start("launch.json", &vars()).await;
    let launched = cluster(&replay)
        .await
        .launch(&spec(), Duration::from_secs(30))
        .await;
    let pod = created_pod(&replay, 1);
    assert_eq!(pod["metadata"]["labels"]["agentao.pool"], "1");
    assert_eq!(pod["spec"]["activeDeadlineSeconds"], 630);
    assert_eq!(
        pod["spec"]["containers"][0]["command"],
        serde_json::json!(["sleep", "630"])
    );
    drop(launched);
    let checks_failed =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| replay.finish())).is_err();
    assert!(
        checks_failed,
        "the fixture's 600 s checks must catch a 630 s pod"
    );
}

#[tokio::test]
async fn a_taken_pod_name_is_retried_with_another() {
    let replay = Replay::start("name_taken.json", &vars()).await;
    let name = cluster(&replay)
        .await
        .launch(&spec(), Duration::ZERO)
        .await
        .unwrap();
    replay.finish();
    let taken = replay.var("taken").unwrap();
    assert_ne!(name, taken);
    assert_eq!(created_pod(&replay, 1)["metadata"]["name"], taken.as_str());
    assert_eq!(created_pod(&replay, 2)["metadata"]["name"], name.as_str());
}

#[tokio::test]
async fn an_expired_watch_is_resumed_from_a_fresh_read() {
    let replay = Replay::start("watch_gone.json", &vars()).await;
    let name = cluster(&replay)
        .await
        .launch(&spec(), Duration::ZERO)
        .await
        .unwrap();
    replay.finish();
    assert_eq!(Some(name), replay.var("pod"));
    let versions: Vec<String> = replay
        .received()
        .iter()
        .filter_map(|r| {
            r.query
                .iter()
                .find(|(k, _)| k == "resourceVersion")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(versions, ["1001", "1190", "1430"]);
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_is_missing_and_its_pod_deleted() {
    let replay = Replay::start("image_missing.json", &vars()).await;
    let err = cluster(&replay)
        .await
        .launch(&spec(), Duration::ZERO)
        .await
        .unwrap_err();
    replay.finish();
    assert!(
        matches!(&err, SandboxError::ImageMissing(i) if i == IMAGE),
        "{err:?}"
    );
    assert!(err.is_environment());
    let last = replay.received().pop().unwrap();
    assert_eq!(last.method, "DELETE");
    assert_eq!(
        Some(last.path.rsplit('/').next().unwrap().to_owned()),
        replay.var("pod")
    );
}

#[tokio::test]
async fn a_pod_that_fails_before_running_is_reported_and_deleted() {
    let replay = Replay::start("pod_failed.json", &vars()).await;
    let err = cluster(&replay)
        .await
        .launch(&spec(), Duration::ZERO)
        .await
        .unwrap_err();
    replay.finish();
    let SandboxError::PodFailed { pod, reason } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(Some(pod.clone()), replay.var("pod"));
    assert!(
        reason.contains("Failed before running") && reason.contains("StartError"),
        "{reason}"
    );
    assert!(err.is_environment());
}

#[tokio::test]
async fn a_pod_that_never_runs_is_given_up_at_the_launch_timeout() {
    let replay = Replay::start("never_running.json", &vars()).await;
    let kube = cluster(&replay)
        .await
        .with_launch_timeout(Duration::from_secs(1));
    let begun = std::time::Instant::now();
    let err = kube.launch(&spec(), Duration::ZERO).await.unwrap_err();
    replay.finish();
    assert!(begun.elapsed() < Duration::from_secs(10));
    let SandboxError::PodFailed { pod, reason } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(Some(pod.clone()), replay.var("pod"));
    assert!(reason.contains("not running after 1s"), "{reason}");
}

#[tokio::test]
async fn logs_are_read_with_a_byte_limit() {
    let replay = Replay::start("logs.json", &vars()).await;
    let logs = cluster(&replay)
        .await
        .logs("agentao-run-42-0badcafe", 4096)
        .await
        .unwrap();
    replay.finish();
    assert_eq!(
        logs,
        "proxy listening on 0.0.0.0:8642\nGET /v1/models 200\n"
    );
}

#[tokio::test]
async fn deleting_a_pod_and_a_missing_pod_both_succeed() {
    let replay = Replay::start("delete.json", &vars()).await;
    let kube = cluster(&replay).await;
    kube.delete("agentao-run-42-0badcafe").await.unwrap();
    kube.delete("agentao-run-42-deadbeef").await.unwrap();
    replay.finish();
    for r in replay.received() {
        assert_eq!(r.body["gracePeriodSeconds"], 0, "{r:?}");
    }
}

#[tokio::test]
async fn the_reaper_deletes_only_pods_of_dead_owners_or_past_deadlines() {
    let replay = Replay::start("reap.json", &vars()).await;
    let reaped = cluster(&replay).await.reap().await.unwrap();
    replay.finish();
    assert_eq!(
        reaped,
        [
            "agentao-orphan-00000002",
            "agentao-overdue-00000003",
            "agentao-unowned-00000005"
        ]
    );
}

#[tokio::test]
async fn exec_streams_output_feeds_stdin_and_returns_the_exit_code() {
    let replay = Replay::start("exec.json", &vars()).await;
    let kube = cluster(&replay).await;
    let mut chunks: Vec<(bool, String)> = Vec::new();
    let argv = ["sh", "-c", "cat; echo oops >&2; exit 3"]
        .map(String::from)
        .to_vec();
    let code = kube
        .exec(
            "agentao-run-42-0badcafe",
            argv,
            Some(b"secret input\n".to_vec()),
            |out, b| chunks.push((out, String::from_utf8_lossy(b).into_owned())),
        )
        .await
        .unwrap();
    assert_eq!(code, 3);
    let text = |stdout: bool| -> String {
        chunks
            .iter()
            .filter(|(o, _)| *o == stdout)
            .map(|(_, s)| s.as_str())
            .collect()
    };
    assert_eq!(
        (text(true), text(false)),
        ("secret input\n".to_owned(), "oops\n".to_owned())
    );

    let req = ExecRequest::new(["id", "-u"])
        .user("1000:1000")
        .workdir("/repo")
        .env("A=1")
        .timeout(Duration::from_secs(90));
    let mut out = Vec::new();
    let code = kube
        .exec_request(
            "agentao-run-42-0badcafe",
            &req,
            Duration::from_secs(30),
            |o, b| {
                assert!(o, "no stderr expected");
                out.extend_from_slice(b)
            },
        )
        .await
        .unwrap();
    assert_eq!((code, out.as_slice()), (0, &b"1000\n"[..]));

    // A server that only speaks v4 (no close of stdin): the exit code still comes through.
    let argv = ["timeout", "1", "sleep", "5"].map(String::from).to_vec();
    let code = kube
        .exec("agentao-run-42-0badcafe", argv, None, |_, _| {})
        .await
        .unwrap();
    assert_eq!(code, 124);
    replay.finish();
    assert_eq!(
        replay.stdin(),
        [b"secret input\n".to_vec(), Vec::new(), Vec::new()]
    );
}

#[tokio::test]
async fn a_sandbox_runs_through_the_engine_on_the_kubernetes_backend() {
    let replay = Replay::start("sandbox.json", &vars()).await;
    let engine = crate::support::engine()
        .await
        .with_backend(KubeBackend::new(cluster(&replay).await).into());
    assert_eq!(engine.backend().kind(), BackendKind::Kubernetes);
    // What the harness does with a sandbox, none of it naming the backend.
    let sb = Sandbox::start(&engine, &spec()).await.unwrap();
    assert_eq!(Some(sb.id().to_owned()), replay.var("pod"));
    let out = sb.exec(&ExecRequest::new(["uname", "-n"])).await.unwrap();
    assert_eq!(
        (out.status, out.stdout.trim()),
        (ExecStatus::Exited(0), sb.id())
    );
    sb.write_file("/tmp/note.txt", b"the answer is 42\n", 0o644)
        .await
        .unwrap();
    let read = sb.read_file("/tmp/note.txt", 1024).await.unwrap();
    assert_eq!(read, b"the answer is 42\n");
    let out = sb.exec(&ExecRequest::shell("exit 3")).await;
    let out = out.unwrap();
    assert_eq!(out.status, ExecStatus::Exited(3), "{out:?}");
    sb.remove().await.unwrap();
    replay.finish();
    // The file went in as a tar on the exec's stdin.
    let sent = &replay.stdin()[1];
    let mut archive = tar::Archive::new(sent.as_slice());
    let files: Vec<(String, Vec<u8>)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut body).unwrap();
            (e.path().unwrap().display().to_string(), body)
        })
        .collect();
    assert_eq!(
        files,
        [("note.txt".to_owned(), b"the answer is 42\n".to_vec())]
    );
}

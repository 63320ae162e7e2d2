//! The warm sandbox pool against the real engine: it fills to the announced demand within the
//! budget, serves a started container once, refills, releases in the background and drains;
//! and a SIGKILLed agentao with a full pool leaves containers the next start reaps.

use std::time::{Duration, Instant};

use agentao::sandbox::{ExecRequest, Sandbox, Setup, reap_leftovers};

use crate::support::{assert_no_containers, containers_of, engine, run_id, spec};

/// Containers of `run` the pool started (label `agentao.pool`), asked of the docker CLI.
fn pooled_of(run: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=agentao.run={run}"),
            "--filter",
            "label=agentao.pool=1",
        ])
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Waits (yielding to the runtime, where the pool's fills run) until `ok`.
async fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_pool_fills_serves_once_refills_and_drains() {
    let run = run_id("pool");
    let engine = engine().await.with_max_sandboxes(2).with_pool(true);
    let spec = spec(&engine, &run).await;
    // Three requests announced; the budget (2) bounds the idle containers.
    engine.warm(vec![spec.clone(); 3]);
    wait_for("two idle containers", 60, || engine.pool_stats().idle == 2).await;
    let idle = pooled_of(&run);
    assert_eq!(
        idle.len(),
        2,
        "the pool holds the budget, no more: {idle:?}"
    );

    let first = Sandbox::start(&engine, &spec).await.unwrap();
    assert!(
        idle.contains(&first.id().to_owned()),
        "served from the pool"
    );
    let out = first
        .exec(&ExecRequest::shell("id -u; echo ok > /tmp/x; cat /tmp/x"))
        .await
        .unwrap();
    assert!(out.success() && out.stdout.ends_with("ok\n"), "{out:?}");
    // Two requests still to come: the pool refills to two while one runs (3 in all).
    wait_for("the refill", 60, || {
        engine.pool_stats().idle == 2 && containers_of(&run).len() == 3
    })
    .await;
    let first_id = first.id().to_owned();
    first.release();
    wait_for("the background removal", 30, || {
        !containers_of(&run).contains(&first_id[..12].to_owned())
    })
    .await;
    let second = Sandbox::start(&engine, &spec).await.unwrap();
    assert_ne!(
        second.id(),
        first_id,
        "a container is never handed out twice"
    );
    assert!(pooled_of(&run).contains(&second.id().to_owned()));
    // What the first wrote is not in the second: a fresh container.
    let out = second
        .exec(&ExecRequest::shell("cat /tmp/x"))
        .await
        .unwrap();
    assert!(!out.success(), "{out:?}");
    second.remove().await.unwrap();

    // One request left, so the window asks for one idle container, no refill.
    wait_for("the pool sized to the demand", 60, || {
        engine.pool_stats().idle == 1 && pooled_of(&run).len() == 1
    })
    .await;
    engine.shutdown(Duration::from_secs(30)).await;
    assert_no_containers(&run, 30);
    // A drained pool starts cold and leaves nothing either.
    let cold = Sandbox::start(&engine, &spec).await.unwrap();
    assert!(pooled_of(&run).is_empty());
    cold.release();
    // Background removals are awaited (as `settle` does at exit, for every pool).
    engine.shutdown(Duration::from_secs(30)).await;
    assert_no_containers(&run, 30);
}

#[tokio::test]
async fn a_sigkilled_agentao_with_a_full_pool_is_reaped_at_the_next_start() {
    let run = run_id("poolkill");
    let engine = engine().await;
    let image = spec(&engine, &run).await.image;
    // A real agentao process whose pool is announced 1000 requests with a budget of 2.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agentao"))
        .args(["--run-id", &run, "--max-sandboxes", "2"])
        .args([
            "bench",
            "sandbox",
            "--iterations",
            "1000",
            "--image",
            &image,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for("a full pool in the child", 120, || {
        pooled_of(&run).len() == 2
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !pooled_of(&run).is_empty(),
        "the pool's containers outlive a SIGKILL until reaped"
    );
    // Requests the child had in flight (a fill's create) finish in the engine first; such a
    // container, created after a reaper looked, would wait for the next start.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // What every command's start does (`cli::context::engine`). Tests running beside this one
    // start agentao commands too, and their reapers may take some of the child's containers
    // first: whatever this reap did not name must be gone all the same.
    let reaped = reap_leftovers(&engine).await.unwrap();
    let after = containers_of(&run);
    assert!(after.is_empty(), "left {after:?} after {reaped:?}");
    assert_no_containers(&run, 30);
}

#[tokio::test]
async fn a_setup_is_done_before_a_container_is_handed_out_pooled_or_cold() {
    let run = run_id("poolsetup");
    let engine = engine().await.with_max_sandboxes(2).with_pool(true);
    let mut spec = spec(&engine, &run).await;
    // Writes its input and the user it runs as (root).
    spec.setup = Some(Setup::new(
        vec![
            "sh".into(),
            "-c".into(),
            "cat > /setup-done && id -u >> /setup-done".into(),
        ],
        b"ready\n".to_vec(),
        Duration::from_secs(30),
    ));
    engine.warm(vec![spec.clone()]);
    wait_for("a set-up idle container", 60, || {
        engine.pool_stats().idle == 1
    })
    .await;
    // The pooled container did the work while it waited.
    let pooled = pooled_of(&run);
    let looked = std::process::Command::new("docker")
        .args(["exec", &pooled[0], "cat", "/setup-done"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&looked.stdout), "ready\n0\n");
    let taken = Sandbox::start(&engine, &spec).await.unwrap();
    assert_eq!(taken.id(), pooled[0], "served from the pool");
    taken.release();

    // Another setup is another container: nothing pooled for it, so it starts cold and sets
    // up before `start` returns.
    let mut other = spec.clone();
    other.setup = Some(Setup::new(
        vec!["sh".into(), "-c".into(), "cat > /setup-done".into()],
        b"cold\n".to_vec(),
        Duration::from_secs(30),
    ));
    let cold = Sandbox::start(&engine, &other).await.unwrap();
    let out = cold
        .exec(&ExecRequest::new(["cat", "/setup-done"]))
        .await
        .unwrap();
    assert_eq!(out.stdout, "cold\n");
    cold.release();

    // A failing setup fails the start with what it said, pooled or cold, and leaves nothing;
    // the pool does not retry it until it is announced again.
    let mut broken = spec.clone();
    broken.setup = Some(Setup::new(
        vec![
            "sh".into(),
            "-c".into(),
            "echo the task is broken >&2; exit 3".into(),
        ],
        Vec::new(),
        Duration::from_secs(30),
    ));
    engine.warm(vec![broken.clone(); 2]);
    wait_for("the failed fills", 60, || {
        let s = engine.pool_stats();
        s.idle == 0 && s.filling == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(engine.pool_stats().filling, 0, "no fill retried in a loop");
    let err = Sandbox::start(&engine, &broken).await.unwrap_err();
    let said = err.to_string();
    assert!(
        said.contains("setup") && said.contains("the task is broken"),
        "{said}"
    );
    engine.shutdown(Duration::from_secs(30)).await;
    assert_no_containers(&run, 30);
}

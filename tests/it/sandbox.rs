//! The sandbox against the real engine: output, limits, copies, clean-up on every path.

use std::time::Duration;

use agentao::sandbox::{Engine, ExecRequest, ExecStatus, Sandbox, SandboxError, reap_leftovers};

use crate::support::{assert_no_containers, engine, run_id, spec};

#[tokio::test]
async fn python_output_and_exit_code_come_back() {
    let engine = engine().await;
    let run = run_id("output");
    let sb = Sandbox::start(&engine, &spec(&engine, &run).await)
        .await
        .unwrap();
    let out = sb
        .exec(&ExecRequest::new([
            "python3",
            "-c",
            "import sys; print(6*7); print('oops', file=sys.stderr); sys.exit(3)",
        ]))
        .await
        .unwrap();
    assert_eq!(out.status, ExecStatus::Exited(3));
    assert_eq!(out.stdout, "42\n");
    assert_eq!(out.stderr, "oops\n");
    sb.remove().await.unwrap();
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn a_command_past_its_timeout_is_killed_and_the_sandbox_lives_on() {
    a_command_past_its_timeout_is_killed_and_the_sandbox_lives_on_on(&engine().await).await;
}

/// [`a_command_past_its_timeout_is_killed_and_the_sandbox_lives_on`] on any engine: the swarm tests run it through that backend.
pub async fn a_command_past_its_timeout_is_killed_and_the_sandbox_lives_on_on(engine: &Engine) {
    let run = run_id("timeout");
    let sb = Sandbox::start(engine, &spec(engine, &run).await)
        .await
        .unwrap();
    let t = std::time::Instant::now();
    let out = sb
        .exec(
            &ExecRequest::shell("echo started; sleep 30; echo never")
                .timeout(Duration::from_secs(2)),
        )
        .await
        .unwrap();
    assert_eq!(out.status, ExecStatus::TimedOut);
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(out.stdout, "started\n");
    // The sleeping process is gone and the sandbox still answers.
    let ps = sb
        .exec(&ExecRequest::shell("ps -eo comm | grep -c '^sleep$'"))
        .await
        .unwrap();
    assert_eq!(
        ps.stdout.trim(),
        "1",
        "only PID 1's sleep should remain: {ps:?}"
    );
    sb.remove().await.unwrap();
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn the_network_is_off() {
    the_network_is_off_on(&engine().await).await;
}

/// [`the_network_is_off`] on any engine: the swarm tests run it through that backend.
pub async fn the_network_is_off_on(engine: &Engine) {
    let run = run_id("network");
    let sb = Sandbox::start(engine, &spec(engine, &run).await)
        .await
        .unwrap();
    let out = sb
        .exec(&ExecRequest::new([
            "python3",
            "-c",
            "import socket\ntry:\n socket.create_connection(('1.1.1.1', 80), timeout=3)\n print('connected')\nexcept OSError as e:\n print('failed', e.errno)",
        ]))
        .await
        .unwrap();
    assert!(out.stdout.starts_with("failed"), "{out:?}");
    let ifaces = sb
        .exec(&ExecRequest::shell("ls /sys/class/net"))
        .await
        .unwrap();
    assert_eq!(ifaces.stdout.trim(), "lo");
    sb.remove().await.unwrap();
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn a_memory_hog_is_reported_as_out_of_memory() {
    a_memory_hog_is_reported_as_out_of_memory_on(&engine().await).await;
}

/// [`a_memory_hog_is_reported_as_out_of_memory`] on any engine: the swarm tests run it through that backend.
pub async fn a_memory_hog_is_reported_as_out_of_memory_on(engine: &Engine) {
    let run = run_id("oom");
    let mut spec = spec(engine, &run).await;
    spec.limits.memory_mb = 64;
    let sb = Sandbox::start(engine, &spec).await.unwrap();
    let out = sb
        .exec(&ExecRequest::new([
            "python3",
            "-c",
            "x = bytearray(512 * 1024 * 1024); print(len(x))",
        ]))
        .await
        .unwrap();
    assert_eq!(out.status, ExecStatus::OutOfMemory, "{out:?}");
    // A normal exit afterwards is not mistaken for another OOM.
    let ok = sb.exec(&ExecRequest::new(["true"])).await.unwrap();
    assert_eq!(ok.status, ExecStatus::Exited(0));
    sb.remove().await.unwrap();
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn the_pids_limit_holds() {
    let engine = engine().await;
    let run = run_id("pids");
    let mut spec = spec(&engine, &run).await;
    spec.limits.pids = 20;
    let sb = Sandbox::start(&engine, &spec).await.unwrap();
    let out = sb
        .exec(&ExecRequest::shell(
            "n=0; for i in $(seq 60); do sleep 5 2>/dev/null & n=$((n+1)); done; sleep 0.5; ps -e --no-headers | wc -l",
        ))
        .await
        .unwrap();
    let procs: usize = out
        .stdout
        .trim()
        .lines()
        .last()
        .unwrap_or("0")
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        procs <= 20,
        "{procs} processes under a limit of 20: {out:?}"
    );
    sb.remove().await.unwrap();
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn files_go_in_and_come_out() {
    let engine = engine().await;
    let run = run_id("copy");
    let sb = Sandbox::start(&engine, &spec(&engine, &run).await)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pkg")).unwrap();
    std::fs::write(dir.path().join("pkg/mod.py"), "VALUE = 'héllo'\n").unwrap();
    std::fs::write(dir.path().join("README"), "read me\n").unwrap();
    sb.copy_dir_in(dir.path(), "/work/src").await.unwrap();
    let out = sb
        .exec(
            &ExecRequest::new(["python3", "-c", "import mod; print(mod.VALUE)"])
                .workdir("/work/src/pkg"),
        )
        .await
        .unwrap();
    assert_eq!(out.stdout, "héllo\n", "{out:?}");
    assert_eq!(
        sb.read_file("/work/src/README", 1024).await.unwrap(),
        b"read me\n"
    );

    sb.write_file("/tmp/data.bin", &[0u8, 1, 2, 255], 0o600)
        .await
        .unwrap();
    let out = sb
        .exec(&ExecRequest::shell(
            "stat -c %a /tmp/data.bin; wc -c < /tmp/data.bin",
        ))
        .await
        .unwrap();
    assert_eq!(out.stdout, "600\n4\n");

    let too_small = sb.read_file("/work/src/pkg/mod.py", 3).await;
    assert!(
        matches!(too_small, Err(SandboxError::TooLarge { .. })),
        "{too_small:?}"
    );
    let missing = sb.read_file("/nope", 10).await;
    assert!(
        matches!(missing, Err(SandboxError::BadPath(_))),
        "{missing:?}"
    );

    let outdir = tempfile::tempdir().unwrap();
    sb.copy_out("/work/src/pkg", outdir.path(), 1 << 20)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(outdir.path().join("pkg/mod.py")).unwrap(),
        "VALUE = 'héllo'\n"
    );
    sb.remove().await.unwrap();
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn chatty_output_is_bounded() {
    let engine = engine().await;
    let run = run_id("chatty");
    let sb = Sandbox::start(&engine, &spec(&engine, &run).await)
        .await
        .unwrap();
    let out = sb
        .exec(
            &ExecRequest::shell("head -c 5000000 /dev/zero | tr '\\0' 'x'; echo END")
                .output_cap(64 * 1024),
        )
        .await
        .unwrap();
    assert!(out.success());
    assert!(out.stdout.ends_with("xEND\n"));
    assert!(out.stdout.len() < 64 * 1024 + 100);
    assert_eq!(out.stdout_dropped, 5_000_004 - 64 * 1024);
    sb.remove().await.unwrap();
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn the_wall_clock_ends_the_container_by_itself() {
    let engine = engine().await;
    let run = run_id("wall");
    let mut spec = spec(&engine, &run).await;
    spec.limits.wall = Duration::from_secs(3);
    let sb = Sandbox::start(&engine, &spec).await.unwrap();
    let out = sb.exec(&ExecRequest::new(["sleep", "10"])).await.unwrap();
    assert_eq!(
        out.status,
        ExecStatus::TimedOut,
        "capped by the wall clock: {out:?}"
    );
    let after = sb.exec(&ExecRequest::new(["true"])).await;
    assert!(
        matches!(after, Err(SandboxError::WallClockExceeded { .. })),
        "{after:?}"
    );
    // Gone without our help: PID 1 ended and the engine auto-removed it.
    std::mem::forget(sb);
    assert_no_containers(&run, 10);
}

#[tokio::test]
async fn dropping_the_guard_removes_the_container() {
    let engine = engine().await;
    let run = run_id("drop");
    {
        let sb = Sandbox::start(&engine, &spec(&engine, &run).await)
            .await
            .unwrap();
        assert_eq!(crate::support::containers_of(&run).len(), 1);
        drop(sb);
    }
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn a_panicking_task_still_removes_its_container() {
    let engine = engine().await;
    let run = run_id("panic");
    let spec = spec(&engine, &run).await;
    let handle = tokio::spawn(async move {
        let sb = Sandbox::start(&engine, &spec).await.unwrap();
        let _ = sb.exec(&ExecRequest::new(["true"])).await;
        panic!("boom while holding {sb:?}");
    });
    assert!(handle.await.unwrap_err().is_panic());
    assert_no_containers(&run, 5);
}

#[tokio::test]
async fn the_reaper_removes_orphans_and_spares_the_living() {
    let engine = engine().await;
    let run = run_id("reap");
    let image = crate::support::base_image(&engine).await;
    // An orphan: its owner label names a process that does not exist.
    let created = std::process::Command::new("docker")
        .args([
            "create",
            "--label",
            &format!("agentao.run={run}"),
            "--label",
            "agentao.owner=00000000:1:1",
            "--label",
            "agentao.deadline=99999999999",
            &image,
            "sleep",
            "60",
        ])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let orphan = String::from_utf8_lossy(&created.stdout).trim()[..12].to_owned();
    // A live one, owned by this process.
    let live_run = run_id("reap-live");
    let live = Sandbox::start(&engine, &crate::support::spec(&engine, &live_run).await)
        .await
        .unwrap();

    let report = reap_leftovers(&engine).await.unwrap();
    assert!(report.containers.contains(&orphan), "{report:?}");
    assert_no_containers(&run, 5);
    assert_eq!(crate::support::containers_of(&live_run).len(), 1);
    live.remove().await.unwrap();
    assert_no_containers(&live_run, 5);
}

#[tokio::test]
async fn a_missing_image_is_a_typed_error() {
    let engine = engine().await;
    let run = run_id("missing");
    let spec = agentao::sandbox::SandboxSpec::new("agentao/does-not-exist:0", &run);
    let err = Sandbox::start(&engine, &spec).await.unwrap_err();
    assert!(matches!(err, SandboxError::ImageMissing(_)), "{err:?}");
    assert!(err.is_environment());
    assert_no_containers(&run, 2);
}

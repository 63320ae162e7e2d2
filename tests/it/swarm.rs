//! The sandbox layer on a Docker Swarm: a single-node swarm on loopback (made by these tests
//! when the engine is in none, and left again when the last of them ends) and a local registry
//! (Debian's `docker-registry`, started on loopback). The harness's own tests run through the
//! `swarm` backend, and so does a validator round; a sandbox lost mid-evaluation is retried
//! once; a SIGKILLed agentao's services are reaped at the next start; an image is pushed once
//! per content hash.

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agentao::eval::{EvalConfig, Outcome, evaluate};
use agentao::sandbox::{
    BackendKind, Engine, ExecRequest, Registry, Sandbox, SwarmBackend, SwarmOptions, reap_leftovers,
};

use crate::support::{assert_no_containers, engine, run_id, services_of, spec};

/// The swarm and the registry, shared by the tests of this file that run at once.
struct Cluster {
    users: usize,
    made_swarm: bool,
    registry: Option<(Child, String)>,
}

static CLUSTER: Mutex<Cluster> = Mutex::new(Cluster {
    users: 0,
    made_swarm: false,
    registry: None,
});

/// One test's hold on the cluster: the last one to go leaves the swarm (when these tests made
/// it) and stops the registry.
struct Lease {
    registry: String,
}

fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI")
}

fn swarm_state() -> String {
    let out = docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn lease() -> Lease {
    let mut c = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    if swarm_state() != "active" {
        let out = docker(&[
            "swarm",
            "init",
            "--advertise-addr",
            "127.0.0.1",
            "--listen-addr",
            "127.0.0.1:2377",
        ]);
        assert!(out.status.success(), "docker swarm init: {out:?}");
        c.made_swarm = true;
    }
    if c.registry.is_none() {
        c.registry = Some(start_registry());
    }
    c.users += 1;
    Lease {
        registry: c
            .registry
            .as_ref()
            .map(|(_, a)| a.clone())
            .unwrap_or_default(),
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut c = CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        c.users -= 1;
        if c.users > 0 {
            return;
        }
        if let Some((mut child, _)) = c.registry.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if c.made_swarm {
            let out = docker(&["swarm", "leave", "--force"]);
            assert!(out.status.success(), "docker swarm leave: {out:?}");
            c.made_swarm = false;
        }
    }
}

/// Debian's registry on a free loopback port, storing under the cache (so a later run finds
/// what an earlier one pushed; deleting it only costs the pushes again).
fn start_registry() -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cache = std::env::var("AGENTAO_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| agentao::config::Settings::defaults().cache_dir);
    let store = cache.join("test-registry");
    std::fs::create_dir_all(&store).unwrap();
    let config = store.join(format!("config-{port}.yml"));
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            store.join("data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (Debian's docker-registry package; make deps installs it)");
    crate::support::wait_listening(port, "the registry");
    (child, format!("127.0.0.1:{port}"))
}

/// The local engine with sandboxes on the swarm and images from the test registry.
async fn swarm_engine(lease: &Lease) -> Engine {
    let engine = engine().await;
    let swarm = SwarmBackend::connect(
        &engine,
        SwarmOptions {
            registry: Some(lease.registry.clone()),
            ..SwarmOptions::default()
        },
    )
    .await
    .expect("the swarm backend on the test swarm");
    engine.with_backend(swarm.into())
}

#[tokio::test]
async fn a_swarm_sandbox_is_a_service_with_the_local_limits_and_its_logs_travel() {
    let lease = lease();
    let engine = swarm_engine(&lease).await;
    assert_eq!(engine.backend().kind(), BackendKind::Swarm);
    let run = run_id("swarm-limits");
    let mut spec = spec(&engine, &run).await;
    spec.limits.memory_mb = 300;
    spec.limits.pids = 77;
    spec.limits.cpus = 0.5;
    let sb = Sandbox::start(&engine, &spec).await.unwrap();
    // It is a swarm service's task, labelled like every sandbox, service and container alike.
    let services = services_of(&run);
    assert_eq!(services.len(), 1, "{services:?}");
    let inspect = docker(&[
        "inspect",
        "--format",
        "{{index .Config.Labels \"com.docker.swarm.service.id\"}} {{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.CapDrop}} {{.HostConfig.Init}} {{len .NetworkSettings.Networks}}",
        sb.id(),
    ]);
    let fields: Vec<String> = String::from_utf8_lossy(&inspect.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mb = (300 * 1024 * 1024).to_string();
    assert!(
        fields[0].starts_with(&services[0]),
        "{fields:?} {services:?}"
    );
    assert_eq!(
        fields[1..],
        [
            mb.as_str(),
            mb.as_str(),
            "500000000",
            "77",
            "[ALL]",
            "true",
            "0"
        ],
        "memory, swap, cpus, pids, capabilities, init, networks"
    );
    // No process of the work can gain privileges: `no-new-privileges` where the engine's
    // service spec takes it, else no set-id file is left.
    let privileges = sb
        .exec(
            &ExecRequest::shell(
                "grep NoNewPrivs /proc/self/status; find / -xdev -type f -perm /6000",
            )
            .user("1000:1000"),
        )
        .await
        .unwrap();
    let text = privileges.stdout.trim();
    assert!(
        text.contains("NoNewPrivs:\t1") || text.lines().count() == 1,
        "{text}"
    );
    // What PID 1 writes comes back through the services endpoint.
    let out = sb
        .exec(&ExecRequest::shell("echo from-the-sandbox > /proc/1/fd/1"))
        .await
        .unwrap();
    assert!(out.success(), "{out:?}");
    let swarm = SwarmBackend::connect(&engine, SwarmOptions::default())
        .await
        .unwrap();
    let service = services[0].clone();
    let mut logs = String::new();
    for _ in 0..50 {
        logs = swarm.logs(&engine, &service).await.unwrap();
        if logs.contains("from-the-sandbox") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(logs.contains("from-the-sandbox"), "{logs:?}");
    sb.remove().await.unwrap();
    assert_no_containers(&run, 30);
    // The limits as they bite, through the same backend.
    crate::sandbox::the_network_is_off_on(&engine).await;
    crate::sandbox::a_memory_hog_is_reported_as_out_of_memory_on(&engine).await;
    crate::sandbox::a_command_past_its_timeout_is_killed_and_the_sandbox_lives_on_on(&engine).await;
}

#[tokio::test]
async fn the_harness_holds_through_swarm() {
    let lease = lease();
    let engine = swarm_engine(&lease).await;
    crate::eval::the_gold_patch_resolves_and_the_empty_patch_does_not_on(&engine).await;
    crate::eval::an_infinite_loop_times_out_and_the_container_is_gone_on(&engine).await;
    crate::eval::reaching_for_the_network_fails_inside_and_the_run_goes_on_on(&engine).await;
}

#[tokio::test]
async fn the_adversarial_corpus_holds_through_swarm() {
    let lease = lease();
    let engine = swarm_engine(&lease).await.with_max_sandboxes(2);
    crate::adversarial::every_hostile_patch_gets_its_verdict_on_a_forged_task_on(&engine).await;
}

#[tokio::test]
async fn a_validator_round_runs_through_swarm() {
    let lease = lease();
    let engine = swarm_engine(&lease).await;
    crate::round::a_local_round_goes_over_the_wire_and_sets_weights_on(&engine).await;
}

/// Removes every container of `run` as soon as it appears, `times` times, for up to `secs`
/// seconds: a node dying under the sandbox. Returns how many it removed.
async fn lose_sandboxes(run: String, times: usize, secs: u64) -> usize {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut killed = std::collections::HashSet::new();
    while killed.len() < times && Instant::now() < deadline {
        for id in crate::support::containers_of(&run) {
            if killed.insert(id.clone()) {
                docker(&["rm", "-f", &id]);
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    killed.len()
}

#[tokio::test]
async fn a_sandbox_lost_mid_evaluation_is_retried_once_and_never_blamed_on_the_miner() {
    let lease = lease();
    // Cold starts only: the container the evaluation runs in appears when it starts.
    let engine = swarm_engine(&lease).await.with_pool(false);
    let task = crate::eval::fixture_task(&engine).await;
    let run = run_id("swarm-lost");
    let cfg = EvalConfig {
        run_id: run.clone(),
        test_timeout: Duration::from_secs(20),
        ..EvalConfig::default()
    };
    // The first sandbox dies under the evaluation: the retry resolves it.
    let killer = tokio::spawn(lose_sandboxes(run.clone(), 1, 120));
    let v = evaluate(&engine, &task, &task.patch, &cfg).await;
    assert_eq!(killer.await.unwrap(), 1);
    assert_eq!(v.outcome, Outcome::Resolved, "{v:?}");
    assert_eq!(v.retries, 1, "{v:?}");
    assert_no_containers(&run, 30);

    // Both die: an environment error, never a miner's failure.
    let run = run_id("swarm-lost-twice");
    let cfg = EvalConfig {
        run_id: run.clone(),
        ..cfg
    };
    let killer = tokio::spawn(lose_sandboxes(run.clone(), 2, 120));
    let v = evaluate(&engine, &task, &task.patch, &cfg).await;
    assert_eq!(killer.await.unwrap(), 2);
    assert!(v.is_environment_error(), "{v:?}");
    assert!(!v.resolved);
    assert_no_containers(&run, 30);
}

#[tokio::test]
async fn a_sigkilled_agentao_leaves_services_the_next_start_reaps() {
    let lease = lease();
    let engine = swarm_engine(&lease).await;
    let run = run_id("swarm-kill");
    let image = spec(&engine, &run).await.image;
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentao"))
        .args(["--run-id", &run, "--max-sandboxes", "2"])
        .args(["--sandbox.backend", "swarm", "--registry", &lease.registry])
        .args([
            "bench",
            "sandbox",
            "--iterations",
            "1000",
            "--image",
            &image,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while services_of(&run).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the child never ran two sandboxes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !services_of(&run).is_empty(),
        "the services outlive a SIGKILL until reaped"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    // What every command's start does (`cli::context::engine`).
    let reaped = reap_leftovers(&engine).await.unwrap();
    assert!(reaped.services.len() >= 2, "{reaped:?}");
    assert_no_containers(&run, 60);
}

#[tokio::test]
async fn an_image_is_pushed_once_per_content_hash() {
    let lease = lease();
    let engine = engine().await;
    let base = crate::support::base_image(&engine).await;
    let first = Registry::new(&lease.registry).unwrap();
    let reference = first.publish(&engine, &base).await.unwrap();
    assert!(
        reference.starts_with(&format!("{}/agentao/base:", lease.registry)),
        "{reference}"
    );
    // At most one push (an earlier run may have pushed this content already), and none again.
    let pushed = first.pushes();
    assert!(pushed <= 1);
    assert_eq!(first.publish(&engine, &base).await.unwrap(), reference);
    assert_eq!(first.pushes(), pushed);
    // Another process asks the registry, which has it.
    let second = Registry::new(&lease.registry).unwrap();
    assert_eq!(second.publish(&engine, &base).await.unwrap(), reference);
    assert_eq!(second.pushes(), 0);
    // The registry itself lists the tag, asked over its own API.
    let tag = reference.rsplit_once(':').unwrap().1;
    let tags: serde_json::Value = reqwest::get(format!(
        "http://{}/v2/agentao/base/tags/list",
        lease.registry
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        tags["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x == tag)),
        "{tags}"
    );
    // Sandboxes starting at once push an image the registry lacks once between them.
    let fresh = format!("agentao/pushtest-{}:latest", &run_id("p")[7..]);
    assert!(docker(&["tag", &base, &fresh]).status.success());
    let third = Registry::new(&lease.registry).unwrap();
    let refs = futures_util::future::join_all((0..4).map(|_| third.publish(&engine, &fresh))).await;
    let refs: Vec<String> = refs.into_iter().map(Result::unwrap).collect();
    assert!(refs.iter().all(|r| *r == refs[0]), "{refs:?}");
    assert_eq!(third.pushes(), 1);
    docker(&["rmi", &fresh, &refs[0]]);
    // A tag the registry never saw is not mistaken for one it holds.
    assert!(
        !second
            .has_manifest("agentao/base", "0000000000000000")
            .await
            .unwrap()
    );
}

//! Helpers shared by the integration tests.

use std::process::Command;

use agentao::sandbox::{Engine, SandboxSpec, base_image_tag};

/// A connected engine; panics with a clear message when Docker is unreachable.
pub async fn engine() -> Engine {
    Engine::connect(None)
        .await
        .expect("the Docker engine must be reachable for integration tests")
}

/// The base image reference, asserting that it was built.
pub async fn base_image(engine: &Engine) -> String {
    let image = base_image_tag().reference;
    assert!(
        engine.image_exists(&image).await.unwrap(),
        "{image} is missing: run `agentao image build-base` (make test does)"
    );
    image
}

/// A unique run id for one test.
pub fn run_id(test: &str) -> String {
    format!(
        "test-{test}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// A spec on the base image for one test's run id.
pub async fn spec(engine: &Engine, run: &str) -> SandboxSpec {
    SandboxSpec::new(base_image(engine).await, run)
}

/// Containers with this run label, asked of the docker CLI (independent of our code).
pub fn containers_of(run: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=agentao.run={run}")])
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Waits up to `secs` for every container of `run` to disappear, then asserts it.
pub fn assert_no_containers(run: &str, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let left = containers_of(run);
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "containers of run {run} left behind: {left:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

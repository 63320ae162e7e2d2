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
    docker_ids(&["ps", "-aq", "--filter", &format!("label=agentao.run={run}")])
}

/// The ids a docker CLI listing prints, one a line.
fn docker_ids(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

/// Swarm services with this run label, asked of the docker CLI (none when the engine is in no
/// swarm).
pub fn services_of(run: &str) -> Vec<String> {
    docker_ids(&[
        "service",
        "ls",
        "-q",
        "--filter",
        &format!("label=agentao.run={run}"),
    ])
}

/// Waits up to `secs` for every container (and swarm service) of `run` to disappear, then
/// asserts it.
pub fn assert_no_containers(run: &str, secs: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let mut left = containers_of(run);
        left.extend(services_of(run));
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

/// Waits up to a minute for something to listen on loopback `port` (`what` names it).
pub fn wait_listening(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A request seen by a [`TestServer`].
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response of a [`TestServer`] handler.
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type: content_type.to_owned(),
            body: body.into(),
        }
    }
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A small HTTP/1.1 server on loopback for tests: every request goes to a handler and is
/// recorded. One request per connection.
pub struct TestServer {
    pub url: String,
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> TestServer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let handler: std::sync::Arc<Handler> = std::sync::Arc::new(handler);
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let head_end = loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.lines();
                    let mut first = lines.next().unwrap_or("").split_whitespace();
                    let method = first.next().unwrap_or("").to_owned();
                    let path = first.next().unwrap_or("").to_owned();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .collect();
                    let len = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    let mut body = buf[head_end..].to_vec();
                    while body.len() < len {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        body.extend_from_slice(&chunk[..n]);
                    }
                    let req = Request {
                        method,
                        path,
                        headers,
                        body,
                    };
                    let resp = handler(&req);
                    seen.lock().unwrap().push(req);
                    let head = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        resp.status,
                        resp.content_type,
                        resp.body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&resp.body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        TestServer {
            url,
            requests,
            task,
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A Python virtualenv under the cache directory with `packages` installed (made once; later
/// calls reuse it). Returns its `python`.
pub async fn python_venv(name: &str, packages: &[&str]) -> std::path::PathBuf {
    let dir = agentao::config::default_cache_dir()
        .join("pyenv")
        .join(name);
    let index = std::env::var("PIP_INDEX_URL").ok();
    agentao::python::venv::ensure_venv(&dir, packages, index.as_deref())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The venv with the Python Bittensor SDK (and `bt_decode`, the decoder of its chain types, and
/// `bittensor-drand`, its timelock encryption, pinned at the version 10.5.0 resolves to), made
/// once per test process even when tests ask for it at the same time.
pub async fn bittensor() -> std::path::PathBuf {
    static VENV: tokio::sync::OnceCell<std::path::PathBuf> = tokio::sync::OnceCell::const_new();
    VENV.get_or_init(|| {
        python_venv(
            "bittensor",
            &[
                "bittensor==10.5.0",
                "bt-decode==0.8.0",
                "bittensor-drand==2.0.0",
            ],
        )
    })
    .await
    .clone()
}

/// agentao's stderr as a person reads it: a JSON record (`--log-format json`) becomes its
/// message, prefixed `error: ` or `hint: ` as the plain format prints it; plain lines stay.
pub fn readable_lines(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match serde_json::from_str::<serde_json::Value>(l) {
            Ok(v) if v.is_object() => {
                let message = v["fields"]["message"].as_str().unwrap_or("").to_owned();
                match (v["level"].as_str(), v["fields"]["kind"].as_str()) {
                    (Some("ERROR"), _) => format!("error: {message}"),
                    (_, Some("hint")) => format!("hint: {message}"),
                    _ => message,
                }
            }
            _ => l.to_owned(),
        })
        .collect()
}

/// A shared buffer the captured log is written into.
#[derive(Clone, Default)]
pub struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    /// What was logged so far, one event a line.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with its log (INFO and up, plain text, one event a line) captured: every event
/// logged while `f` is polled, as a neuron logs it, and nothing of other tests.
pub async fn logged<F: std::future::Future>(f: F) -> (F::Output, String) {
    use tracing::instrument::WithSubscriber as _;
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let out = f.with_subscriber(subscriber).await;
    (out, buffer.text())
}

/// The lines of `log` at WARN or above.
pub fn warnings(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect()
}

/// A hotkey written in the SDK's keyfile layout under `dir` (wallet `name`, hotkey `default`).
pub fn sdk_hotkey(dir: &std::path::Path, name: &str) -> agentao::subnet::Keypair {
    agentao::subnet::Wallet::new(dir, name, "default")
        .create_hotkey()
        .unwrap()
}

/// Waits up to a minute for something to listen on `port` on loopback.
pub async fn wait_for_port(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Starts the SDK's Python running `script` (an axon on `port`) with `args`, stderr dropped
/// and stdout as `stdout`; returns once the axon listens.
pub async fn sdk_axon(
    script: &str,
    args: &[&std::ffi::OsStr],
    port: u16,
    stdout: std::process::Stdio,
) -> std::process::Child {
    let child = Command::new(bittensor().await)
        .args(["-c", script])
        .args(args)
        .stdout(stdout)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port, "the Python axon").await;
    child
}

/// Runs a script in the SDK's Python with `args`; asserts it succeeded and returns its last
/// stdout line as JSON.
pub async fn sdk_json(script: String, args: Vec<String>) -> serde_json::Value {
    let python = bittensor().await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(["-c", &script])
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap()
}

/// A miner whose agent (4 steps) talks to the scripted model at `model_url`, with `store` as
/// its task store and `materializer` for tasks that travel.
pub fn scripted_miner(
    engine: &Engine,
    model_url: &str,
    run: &str,
    store: std::path::PathBuf,
    materializer: Option<std::sync::Arc<agentao::materialize::Materializer>>,
) -> agentao::neurons::miner::Miner {
    agentao::neurons::miner::Miner {
        engine: engine.clone(),
        llm: agentao::llm::LlmClient::new(agentao::llm::LlmConfig::new(
            &format!("{model_url}/v1"),
            "gpt-4o-mini",
        )),
        agent: agentao::agent::AgentConfig {
            max_steps: 4,
            run_id: run.to_owned(),
            ..agentao::agent::AgentConfig::default()
        },
        store,
        model_server: None,
        repair: None,
        materializer,
    }
}

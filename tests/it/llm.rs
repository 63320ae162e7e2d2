//! The embedded model server for real: llama.cpp built by `llm install` (the portable
//! variant), `serve` returning only after a real chat completion, a killed server reaped and
//! restarted, a server that dies while starting reported with its log, `doctor`'s completion
//! check, and `agentao local` rounds whose model server is killed mid-episode.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentao::llm::local::{LocalModel, completion_check};
use agentao::llm::{Budget, EMBEDDED_MODEL, LlmClient, LlmConfig, Message};
use agentao::tasks::TaskStore;

use crate::forge::forged_tinycalc;
use crate::support::{assert_no_containers, containers_of, run_id};

/// The embedded model in the default cache, installed once per test process (the first
/// install builds llama.cpp: minutes).
pub async fn installed() -> LocalModel {
    static DONE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let local = LocalModel::new(&agentao::config::default_cache_dir());
    DONE.get_or_init(|| async {
        local
            .install(std::env::var("PIP_INDEX_URL").ok().as_deref())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    })
    .await;
    local
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The pid of the `llama_cpp.server` process listening on `port`, read from /proc.
fn server_pid(port: u16) -> Option<u32> {
    let want = port.to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_server = args.contains(&b"llama_cpp.server".as_slice());
        let on_port = args
            .windows(2)
            .any(|w| w[0] == b"--port" && w[1] == want.as_bytes());
        (is_server && on_port).then_some(pid)
    })
}

fn kill9(pid: u32) {
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

#[tokio::test]
async fn serve_returns_after_a_real_completion_and_a_killed_server_comes_back() {
    let local = installed().await;
    // The build is the portable one chosen for this CPU, never AVX-512 or AMX.
    let build = local.installed_build().expect("a build marker");
    assert_eq!(build.variant, local.variant.name());
    assert_eq!(
        build.llama_cpp_python,
        agentao::llm::local::LLAMA_CPP_PYTHON_VERSION
    );
    assert!(
        build.system_info.contains("CPU :")
            && !build.system_info.contains("AVX512 = 1")
            && !build.system_info.contains("AMX_INT8 = 1"),
        "{}",
        build.system_info
    );

    let port = free_port();
    let mut server = local.serve(port).await.unwrap();
    assert!(!server.first_reply.trim().is_empty());
    assert_eq!(server.system_info, build.system_info);
    // A completion through the agent's own client: real tokens back.
    let llm = LlmClient::new(LlmConfig::new(&server.base_url, EMBEDDED_MODEL));
    let c = llm
        .chat(
            &[Message::user("Name one colour.")],
            &[],
            &mut Budget::new(1.0),
        )
        .await
        .unwrap();
    assert!(
        !c.message.content.trim().is_empty() && c.usage.completion_tokens > 0,
        "{c:?}"
    );

    // Killed: the handle notices, reaps the process (no zombie) and starts it again.
    let pid = server.pid().unwrap();
    assert_eq!(server_pid(port), Some(pid));
    assert_eq!(
        server.ensure_answering(3, true).await.unwrap(),
        0,
        "a live server that answers is left alone"
    );
    kill9(pid);
    // Probing: whether the process is already gone or not yet, it does not answer.
    let restarts = server.ensure_answering(3, true).await.unwrap();
    assert_eq!(restarts, 1);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the dead server was reaped"
    );
    let new_pid = server.pid().unwrap();
    assert_ne!(new_pid, pid);
    assert_eq!(server_pid(port), Some(new_pid));
    let reply = completion_check(&server.base_url, EMBEDDED_MODEL)
        .await
        .unwrap();
    assert!(!reply.is_empty());
    assert!(server.log_path().with_extension("previous.log").is_file());
    drop(server);
    // The handle owns the process: dropping it ends the server.
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = server_pid(port) {
        assert!(
            Instant::now() < deadline,
            "the server outlived its handle: pid {left} (was {new_pid})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A cache whose `llm/` reuses the installed venv and has `gguf` as its model file.
fn cache_with_model(root: &Path, real: &LocalModel, gguf: Option<&Path>) -> PathBuf {
    let llm = root.join("llm");
    std::fs::create_dir_all(llm.join("models")).unwrap();
    std::os::unix::fs::symlink(real.dir.join("venv"), llm.join("venv")).unwrap();
    let model = LocalModel::new(root).gguf();
    match gguf {
        Some(g) => std::os::unix::fs::symlink(g, &model).unwrap(),
        None => std::fs::write(&model, b"GGUF but not really a model").unwrap(),
    }
    root.to_path_buf()
}

#[tokio::test]
async fn a_server_that_dies_while_starting_says_so_in_one_line_with_its_log() {
    let real = installed().await;
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_with_model(dir.path(), &real, None);
    let local = LocalModel::new(&cache);
    assert!(local.is_installed());
    let port = free_port();
    let started = Instant::now();
    let err = local.serve(port).await.expect_err("a corrupt model fails");
    let text = err.to_string();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "noticed the exit, did not wait out the limit"
    );
    assert!(!text.contains('\n'), "{text}");
    assert!(text.contains("exited (exit code"), "{text}");
    let log = local.dir.join(format!("server-{port}.log"));
    assert!(text.contains(&log.display().to_string()), "{text}");
    // The quoted lines are the log's last ones.
    let last = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap()
        .trim()
        .to_owned();
    assert!(text.ends_with(&last), "{text}\n---\n{last}");
}

#[tokio::test]
async fn an_old_native_install_is_replaced_by_the_portable_build() {
    let real = installed().await;
    let dir = tempfile::tempdir().unwrap();
    let llm = dir.path().join("llm");
    // What the old `llm install` left: a complete venv (llama.cpp built natively), no build
    // marker. The weights and the portable wheel already built are shared with the real cache.
    let venv = llm.join("venv");
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::write(
        venv.join(agentao::python::venv::MARKER),
        "llama-cpp-python[server]",
    )
    .unwrap();
    std::fs::create_dir_all(llm.join("models")).unwrap();
    std::os::unix::fs::symlink(real.gguf(), LocalModel::new(dir.path()).gguf()).unwrap();
    std::os::unix::fs::symlink(real.dir.join("wheels"), llm.join("wheels")).unwrap();
    let local = LocalModel::new(dir.path());
    assert!(
        !local.is_installed(),
        "an install without a build marker is not trusted"
    );

    let build = local
        .install(std::env::var("PIP_INDEX_URL").ok().as_deref())
        .await
        .unwrap();
    assert_eq!(build.variant, local.variant.name());
    assert!(local.is_installed());
    assert_eq!(local.installed_build().unwrap(), build);
    assert!(
        !build.system_info.contains("AVX512 = 1"),
        "{}",
        build.system_info
    );
    // The new venv runs the wheel of this variant: it serves.
    let server = local.serve(free_port()).await.unwrap();
    assert!(!server.first_reply.is_empty());
}

#[tokio::test]
async fn doctor_checks_the_embedded_model_with_a_real_completion() {
    installed().await;
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agentao"))
        .arg("doctor")
        .env("AGENTAO_LLM_PORT", free_port().to_string())
        .env("AGENTAO_DATA_DIR", dir.path())
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("AGENTAO_MODEL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("llm"))
        .unwrap_or_else(|| panic!("no llm line: {out:?}"));
    assert!(
        line.starts_with("ok ")
            && line.contains("the embedded model smollm2-135m-instruct will answer")
            && line.contains("answered \""),
        "{line}"
    );

    // A cache whose model cannot load: the check fails, saying why.
    let broken = tempfile::tempdir().unwrap();
    let cache = cache_with_model(
        broken.path(),
        &LocalModel::new(&agentao::config::default_cache_dir()),
        None,
    );
    let out = Command::new(env!("CARGO_BIN_EXE_agentao"))
        .arg("doctor")
        .env("AGENTAO_CACHE_DIR", &cache)
        .env("AGENTAO_LLM_PORT", free_port().to_string())
        .env("AGENTAO_DATA_DIR", dir.path())
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("AGENTAO_MODEL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("llm"))
        .unwrap_or_else(|| panic!("no llm line: {out:?}"));
    assert!(
        line.starts_with("FAIL") && line.contains("exited") && line.contains("server-"),
        "{line}"
    );
}

/// What an `agentao local` run left.
struct LocalRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    records: Vec<serde_json::Value>,
    data: tempfile::TempDir,
}

/// Chat completions the model server on `port` has answered, from its access log.
fn completions_served(cache: &Path, port: u16) -> usize {
    std::fs::read_to_string(cache.join("llm").join(format!("server-{port}.log")))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"POST /v1/chat/completions HTTP/1.1\" 200"))
        .count()
}

/// `agentao local` on a stored forged task with the embedded model (in `cache`) on its own
/// port; once the agent's sandbox exists and the model has answered `steps` of the episode's
/// requests (after the start-up check's), `during_episode` runs and the model server is
/// killed.
async fn local_round_with_a_killed_server(
    test: &str,
    cache: &Path,
    steps: usize,
    during_episode: impl FnOnce(),
) -> LocalRun {
    let task = forged_tinycalc().await[0].clone();
    let data = tempfile::tempdir().unwrap();
    TaskStore::open(&data.path().join("tasks.db"))
        .unwrap()
        .put(&task)
        .unwrap();
    let run = run_id(test);
    let port = free_port();
    let (out, err) = (data.path().join("stdout"), data.path().join("stderr"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentao"));
    // Only the agent's miner: the repair baseline's miner beside it needs no model.
    cmd.args([
        "local",
        "--no-repair-miner",
        "--max-steps",
        "8",
        "--wall",
        "240",
    ])
    .env("AGENTAO_DATA_DIR", data.path())
    .env("AGENTAO_RUN_ID", &run)
    .env("AGENTAO_LLM_PORT", port.to_string())
    .env("AGENTAO_LOG_FORMAT", "json")
    .env("AGENTAO_CACHE_DIR", cache)
    .env_remove("OPENAI_API_KEY")
    .env_remove("OPENAI_BASE_URL")
    .env_remove("AGENTAO_MODEL")
    .env_remove("AGENTAO_SUBTENSOR_NETWORK")
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out).unwrap())
    .stderr(std::fs::File::create(&err).unwrap());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "agentao local ended before the server was killed: {}",
            std::fs::read_to_string(&err).unwrap()
        );
        assert!(
            Instant::now() < deadline,
            "no agent sandbox, or the model never answered {steps} step(s)"
        );
        if !containers_of(&run).is_empty() && completions_served(cache, port) > steps {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = server_pid(port).expect("the model server runs during the episode");
    during_episode();
    kill9(pid);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    let records = std::fs::read_to_string(data.path().join("dataset").join("records.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_no_containers(&run, 20);
    assert!(
        server_pid(port).is_none(),
        "the model server outlived agentao local"
    );
    LocalRun {
        code: status.code(),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr: std::fs::read_to_string(&err).unwrap(),
        records,
        data,
    }
}

/// The last line of stderr: the one-line cause.
fn cause(run: &LocalRun) -> String {
    crate::support::readable_lines(run.stderr.as_bytes())
        .pop()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_model_server_killed_mid_episode_fails_the_local_round_and_is_restarted() {
    installed().await;
    let cache = agentao::config::default_cache_dir();
    // Killed after the model answered the episode's first request: mid-episode for real.
    let run = local_round_with_a_killed_server("llm-killed", &cache, 1, || {}).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let line = cause(&run);
    eprintln!("agentao local said: {line}");
    assert!(
        line.starts_with("error: the model of miner uid ")
            && line.contains("failed during the round: cannot reach the model API"),
        "{line}"
    );
    // The miner saw its model fail, restarted the server, and said so over the wire.
    assert!(
        run.stderr.contains("the agent's model failed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the embedded model server had died and was restarted"),
        "{}",
        run.stderr
    );
    let report: serde_json::Value =
        serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
    let miner = &report["miners"][0];
    assert_eq!(miner["status_code"], 200, "{report}");
    assert!(
        miner["model_error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the model API"),
        "{report}"
    );
    // The dataset row says so, to be filtered; the tokens of the step answered before the
    // kill came over the wire.
    assert_eq!(run.records.len(), 1);
    assert_eq!(run.records[0]["model_error"], true);
    assert!(
        run.records[0]["completion_tokens"].as_i64().unwrap() > 0,
        "{}",
        run.records[0]
    );
    // The export happened before the non-zero exit.
    assert!(run.stdout.lines().count() >= 2, "{}", run.stdout);
    drop(run.data);
}

#[tokio::test]
async fn a_model_server_that_cannot_restart_makes_the_miner_answer_an_error() {
    let real = installed().await;
    let cache_dir = tempfile::tempdir().unwrap();
    let cache = cache_with_model(cache_dir.path(), &real, Some(&real.gguf()));
    let model = LocalModel::new(&cache).gguf();
    // Mid-episode the weights vanish, so every restart fails.
    let run = local_round_with_a_killed_server("llm-down", &cache, 0, || {
        std::fs::remove_file(&model).unwrap();
    })
    .await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let line = cause(&run);
    eprintln!("agentao local said: {line}");
    assert!(
        line.contains(
            "failed during the round: miner model unavailable: the local model server exited"
        ) && line.contains("server-"),
        "{line}"
    );
    let report: serde_json::Value =
        serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
    let miner = &report["miners"][0];
    assert_eq!(miner["status_code"], 503, "{report}");
    assert_eq!(miner["score"], 0.0);
    assert_eq!(miner["charged"], true, "{report}");
    assert!(
        miner["model_error"]
            .as_str()
            .unwrap()
            .starts_with("miner model unavailable"),
        "{report}"
    );
    assert!(
        run.stderr.contains("restarts failed; answering 503"),
        "{}",
        run.stderr
    );
    assert_eq!(run.records.len(), 1);
    assert_eq!(run.records[0]["model_error"], true);
    // The validator charged the failure to the miner: its average moved (to 0).
    let scores: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.data.path().join("validator/scores.json")).unwrap(),
    )
    .unwrap();
    let hotkey = run.records[0]["miner_hotkey"].as_str().unwrap();
    assert_eq!(scores["by_hotkey"][hotkey], 0.0, "{scores}");
}

/// Instructions an x86-64-v3 (AVX2) CPU lacks, as objdump prints them: AVX-512's zmm registers
/// and opmask operands, AMX's tile registers and tile instructions.
fn beyond_avx2(line: &str) -> bool {
    let Some(insn) = line.split('\t').nth(1) else {
        return false;
    };
    let mnemonic = insn.split_whitespace().next().unwrap_or("");
    insn.contains("%zmm")
        || insn.contains("%tmm")
        || (0..8).any(|k| insn.contains(&format!("{{%k{k}}}")) || insn.contains(&format!("%k{k},")))
        || mnemonic.starts_with("tdpb")
        || matches!(
            mnemonic,
            "ldtilecfg"
                | "sttilecfg"
                | "tileloadd"
                | "tileloaddt1"
                | "tilestored"
                | "tilezero"
                | "tilerelease"
        )
}

/// The libraries `llm install` built hold no AVX-512 or AMX instruction, so the one install
/// runs on any AVX2 CPU, AVX-512/AMX ones included (the crash of issue 14 was native code for
/// the build machine). Read off the disassembly of every library of the installed package.
#[tokio::test]
async fn the_installed_model_server_holds_no_avx512_or_amx_instruction() {
    let local = installed().await;
    let venv = local
        .python()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let mut libs: Vec<PathBuf> = Vec::new();
    for entry in walk(&venv.join("lib")) {
        let name = entry.file_name().unwrap().to_string_lossy().into_owned();
        if entry.components().any(|c| c.as_os_str() == "llama_cpp")
            && name.contains(".so")
            && !entry.is_symlink()
        {
            libs.push(entry);
        }
    }
    assert!(
        libs.iter()
            .any(|l| l.to_string_lossy().contains("libggml-cpu")),
        "no libggml-cpu among {libs:?}"
    );
    let mut avx2 = 0usize;
    for lib in &libs {
        let out = Command::new("objdump")
            .args(["-d", "--no-show-raw-insn"])
            .arg(lib)
            .output()
            .expect("objdump (binutils) runs");
        assert!(out.status.success(), "objdump {}", lib.display());
        let text = String::from_utf8_lossy(&out.stdout);
        let found: Vec<&str> = text.lines().filter(|l| beyond_avx2(l)).take(5).collect();
        assert!(
            found.is_empty(),
            "{} holds AVX-512/AMX instructions: {found:?}",
            lib.display()
        );
        avx2 += text.lines().filter(|l| l.contains("%ymm")).count();
    }
    // The scan sees vector code: the CPU backend is built with AVX2, not scalar only.
    assert!(avx2 > 1000, "{avx2} AVX2 instructions");
    // And the scan itself finds such instructions where they are.
    assert!(beyond_avx2("  4011a0:\tvpaddd %zmm1,%zmm2,%zmm3"));
    assert!(beyond_avx2("  4011a0:\ttdpbssd %tmm1,%tmm2,%tmm3"));
    assert!(!beyond_avx2("  4011a0:\tvpaddd %ymm1,%ymm2,%ymm3"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

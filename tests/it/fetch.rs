//! Bundles over the inline cap (issue 16): the validator sends the description without its
//! bundle and serves the bundle by sha256 on its axon to registered hotkeys; the miner fetches
//! it with a signed request, checks its size and hash, materialises the task and the round
//! resolves. A sender serving a wrong or oversized bundle gets an empty patch and one log line.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use agentao::dataset::RecordStore;
use agentao::eval::EvalConfig;
use agentao::forge::ForgeConfig;
use agentao::materialize::{MaterializeConfig, Materializer};
use agentao::neurons::miner::BundleFetch;
use agentao::neurons::validator::{BundleShelf, Describer, Scores, Validator};
use agentao::subnet::{
    Axon, AxonConfig, AxonTarget, Dendrite, Keypair, Metagraph, Neuron, TaskBundle,
};

use crate::materialize::{at_version, index, remove_image};
use crate::round::task_and_model;
use crate::subnet::neuron;
use crate::support::{
    assert_no_containers, base_image, engine, logged, run_id, scripted_miner, warnings,
};

/// A listener on a free loopback port, and the port.
async fn listen() -> (tokio::net::TcpListener, u16) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

fn at(n: Neuron, port: u16) -> Neuron {
    Neuron { port, ..n }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_over_the_inline_cap_is_fetched_from_the_validator_and_the_round_resolves() {
    let (task, model) = task_and_model().await;
    let engine = engine().await;
    base_image(&engine).await;
    let run = run_id("fetch");
    let version = "1.0.6";
    let dir = tempfile::tempdir().unwrap();
    let idx = index(version, &dir.path().join("ran")).await;
    let url = format!("{}/simple", idx.url);
    let mut task = at_version(&task, version);
    let (validator, sender, miner_key) = (
        Keypair::generate().0,
        Keypair::generate().0,
        Keypair::generate().0,
    );
    let ((vl, vport), (sl, sport), (ml, mport)) = (listen().await, listen().await, listen().await);
    let metagraph = Metagraph {
        netuid: 62,
        neurons: vec![
            at(neuron(0, &validator.ss58(), true, 100.0), vport),
            at(neuron(1, &sender.ss58(), true, 100.0), sport),
            at(neuron(2, &miner_key.ss58(), false, 0.0), mport),
        ],
    };

    // The validator: a tiny inline cap, so the bundle goes on its shelf.
    let mut forge = ForgeConfig::new(&dir.path().join("vcache"));
    forge.index_url = Some(url.clone());
    forge.run_id = run.clone();
    let describer = Describer {
        inline_cap: 16,
        ..Describer::new(forge)
    };
    let shelf = describer.shelf.clone();
    let v = Validator {
        engine: engine.clone(),
        dendrite: Dendrite::new(validator.clone()),
        eval: EvalConfig {
            run_id: run.clone(),
            ..EvalConfig::default()
        },
        time_limit: Duration::from_secs(300),
        judge: None,
        describer: Some(describer),
        forecasts: None,
    };
    let body = v.described_synapse(&task).await;
    let spec = body.spec.clone().expect("described");
    let sha256 = spec["workspace"]["sha256"].as_str().unwrap().to_owned();
    assert!(body.bundle.is_empty(), "over the cap: not inline");
    let on_shelf = shelf.get(&sha256).expect("on the shelf");
    task.image = spec["environment"]["image"].as_str().unwrap().to_owned();
    let bundles = shelf
        .serve_on(Axon::new(
            validator.clone(),
            metagraph.clone(),
            BundleShelf::axon_config(),
        ))
        .serve(vl);

    // The validator's axon: registered callers only, known hashes only.
    let ask = |key: &Keypair, hash: &str| {
        let (key, hash) = (key.clone(), hash.to_owned());
        let target = AxonTarget {
            ip: "127.0.0.1".into(),
            port: vport,
            hotkey: validator.ss58(),
        };
        async move {
            let ask = TaskBundle {
                sha256: hash,
                bundle: String::new(),
            };
            Dendrite::new(key)
                .call(&target, ask, Duration::from_secs(10))
                .await
        }
    };
    assert_eq!(ask(&Keypair::generate().0, &sha256).await.status_code, 403);
    assert_eq!(ask(&miner_key, &"0".repeat(64)).await.status_code, 404);

    // Another sender serves a tampered bundle, then one over the miner's cap.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let good = on_shelf.to_vec();
    let lying = Axon::new(
        sender.clone(),
        metagraph.clone(),
        BundleShelf::axon_config(),
    )
    .task_bundle(move |s| {
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let mut bytes = good.clone();
        if n == 0 {
            *bytes.last_mut().unwrap() ^= 1;
        } else {
            bytes = vec![7; 3 << 20];
        }
        async move {
            Ok(TaskBundle {
                sha256: s.body.sha256,
                bundle: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes),
            })
        }
    })
    .serve(sl);

    let miner = scripted_miner(
        &engine,
        &model.url,
        &run,
        dir.path().join("none.db"),
        Some(Arc::new(Materializer::new(
            engine.clone(),
            MaterializeConfig {
                index_url: Some(url.clone()),
                ..MaterializeConfig::new(&dir.path().join("mcache"))
            },
        ))),
    );
    let miner_axon = Axon::new(miner_key.clone(), metagraph.clone(), AxonConfig::default());
    let fetch = BundleFetch::new(
        Dendrite::new(miner_key.clone()),
        miner_axon.metagraph_handle(),
        1 << 20,
    );
    for expected in ["bundle sha256 mismatch", "fetching from 127.0.0.1"] {
        let (answer, log) =
            logged(miner.answer_from(body.clone(), Some((&fetch, &sender.ss58())))).await;
        let answer = answer.unwrap();
        assert_eq!(answer.patch.as_deref(), Some(""), "{log}");
        let refused = warnings(&log);
        assert_eq!(refused.len(), 1, "one line: {log}");
        assert!(
            refused[0].contains(expected) && refused[0].contains("empty patch"),
            "{log}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    lying.abort();

    // The miner keeps serving: the validator's round fetches from its shelf and resolves.
    let served = miner.serve_on(miner_axon).serve(ml);
    let mut scores = Scores::load(&dir.path().join("scores.json"));
    let mut records = RecordStore::open(&dir.path().join("records.jsonl")).unwrap();
    let results = v
        .round(
            &task,
            &[at(neuron(2, &miner_key.ss58(), false, 0.0), mport)],
            &mut scores,
            &mut records,
            "fetch",
        )
        .await
        .unwrap();
    served.abort();
    bundles.abort();
    let r = &results[0];
    assert_eq!(r.status_code, 200, "{r:?}");
    assert!(r.resolved, "{r:?}");
    assert_no_containers(&run, 20);
    remove_image(&task.image);
}

//! The adversarial corpus against a forged task: every hostile patch gets its verdict, the
//! honest controls resolve, and no sandbox is left behind.

use std::time::Duration;

use agentao::eval::EvalConfig;
use agentao::eval::adversarial::{corpus, run_cases};
use agentao::sandbox::Engine;

use crate::support::{assert_no_containers, engine, run_id};

#[tokio::test]
async fn every_hostile_patch_gets_its_verdict_on_a_forged_task() {
    every_hostile_patch_gets_its_verdict_on_a_forged_task_on(&engine().await).await;
}

/// [`every_hostile_patch_gets_its_verdict_on_a_forged_task`] on any engine: the swarm tests run it through that backend.
pub async fn every_hostile_patch_gets_its_verdict_on_a_forged_task_on(engine: &Engine) {
    let tasks = crate::forge::forged_tinycalc().await;
    let (task, cases) = tasks
        .iter()
        .find_map(|t| corpus(t).ok().map(|c| (t, c)))
        .expect("a forged task whose fix line can take a statement");
    assert!(cases.len() >= 60, "{} cases", cases.len());
    // AGENTAO_ADV_CASE=<part of a name> runs only the matching cases, with their logs.
    let only = std::env::var("AGENTAO_ADV_CASE").ok();
    let cases: Vec<_> = cases
        .into_iter()
        .filter(|c| only.as_deref().is_none_or(|o| c.name.contains(o)))
        .collect();
    let run = run_id("adversarial");
    let cfg = EvalConfig {
        run_id: run.clone(),
        test_timeout: Duration::from_secs(8),
        ..EvalConfig::default()
    };
    let results = run_cases(engine, task, &cases, &cfg, 2).await;
    if only.is_some() {
        for c in &cases {
            let v = agentao::eval::evaluate(engine, task, &c.patch, &cfg).await;
            eprintln!("=== {}\n{}\n--- log\n{}", c.name, c.patch, v.log);
        }
    }
    let mut failed = Vec::new();
    for r in &results {
        eprintln!(
            "{:<5} {:<10} {:<70} {:?} -> {:?}",
            if r.met { "ok" } else { "WRONG" },
            format!("{:?}", r.class),
            r.name,
            r.expect,
            r.outcome
        );
        if !r.met {
            failed.push(format!(
                "{}: expected {:?}, got {:?}",
                r.name, r.expect, r.outcome
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "{} wrong:\n{}",
        failed.len(),
        failed.join("\n")
    );
    assert_no_containers(&run, 30);
}

//! Cross-validation by task: the tasks are dealt into k folds (seeded shuffle); each fold's
//! tasks are held out while the heads are fitted on the rest, then every agent's outcome on
//! them is forecast. Reported over all held-out outcomes pooled (and per fold): the fix head,
//! the text head and the agent-ability-only baseline, fitted in the same run; the effort
//! head against the human time buckets; and agents held out of training whose ability is
//! learnt online from their first outcomes.

use serde::{Deserialize, Serialize};

use super::data::Dataset;
use super::facts::{TIME_BUCKETS, bucket_of_minutes};
use super::features::View;
use super::metrics::{Bin, auroc, brier, calibration, log_loss, spearman};
use super::model::{Ability, Head};
use super::train::{Features, TrainConfig, fit_effort, fit_head};

/// How to cross-validate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    pub folds: usize,
    pub seed: u64,
    pub bins: usize,
    pub train: TrainConfig,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            folds: 5,
            seed: 23,
            bins: 10,
            train: TrainConfig::default(),
        }
    }
}

/// How well one head forecast the held-out outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadScores {
    pub name: String,
    /// Over all held-out outcomes pooled.
    pub auroc: f64,
    pub brier: f64,
    pub log_loss: f64,
    pub auroc_per_fold: Vec<f64>,
    pub calibration: Vec<Bin>,
}

/// How well the effort head placed held-out tasks in their time buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffortScores {
    pub view: View,
    pub tasks: usize,
    /// Share of tasks whose predicted bucket is the annotated one.
    pub bucket_accuracy: f64,
    /// The same for always answering the training folds' most common bucket.
    pub majority_accuracy: f64,
    /// Spearman correlation of predicted minutes with the annotated bucket.
    pub spearman: f64,
    /// Mean absolute error in ln(minutes), and the same for predicting the training mean.
    pub mae_log_minutes: f64,
    pub mae_log_minutes_mean_baseline: f64,
}

/// Agents held out of training, their ability learnt online from their first `k` outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAgentScores {
    pub agents: usize,
    /// (k, AUROC, Brier) on the held-out agents' other outcomes.
    pub by_outcomes_seen: Vec<(usize, f64, f64)>,
    /// The same agents with their ability fitted in training, on the same outcomes.
    pub fitted_auroc: f64,
    pub fitted_brier: f64,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub source: String,
    pub folds: usize,
    pub seed: u64,
    pub tasks: usize,
    pub agents: usize,
    pub responses: usize,
    pub heads: Vec<HeadScores>,
    pub effort: Vec<EffortScores>,
    pub new_agents: NewAgentScores,
    pub seconds: f64,
}

/// A deterministic generator (splitmix64) for dealing folds.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher–Yates.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// The fold of each task.
pub fn deal_folds(tasks: usize, folds: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..tasks).collect();
    SplitMix(seed).shuffle(&mut order);
    let mut fold = vec![0; tasks];
    for (k, t) in order.into_iter().enumerate() {
        fold[t] = k % folds.max(1);
    }
    fold
}

/// The heads a report compares, with their names.
const HEADS: [(&str, Features); 3] = [
    ("fix: text + gold patch + tests", Features::Task(View::Fix)),
    ("text: statement + repository", Features::Task(View::Text)),
    ("baseline: agent ability only", Features::None),
];

/// Cross-validates on `data`.
pub fn cross_validate(data: &Dataset, cfg: &EvalConfig) -> EvalReport {
    let started = std::time::Instant::now();
    let fold_of = deal_folds(data.tasks.len(), cfg.folds, cfg.seed);
    let mut pooled: Vec<(Vec<f64>, Vec<bool>)> = vec![Default::default(); HEADS.len()];
    let mut per_fold: Vec<Vec<f64>> = vec![Vec::new(); HEADS.len()];
    for k in 0..cfg.folds {
        let train: Vec<usize> = (0..data.tasks.len()).filter(|t| fold_of[*t] != k).collect();
        let held: Vec<bool> = fold_of.iter().map(|f| *f == k).collect();
        for (h, (_, features)) in HEADS.iter().enumerate() {
            let head = fit_head(data, &train, *features, &cfg.train);
            let (p, y) = forecast_held(data, &head, &held);
            per_fold[h].push(auroc(&p, &y).unwrap_or(0.5));
            pooled[h].0.extend(p);
            pooled[h].1.extend(y);
        }
    }
    let heads = HEADS
        .iter()
        .zip(pooled)
        .zip(per_fold)
        .map(|(((name, _), (p, y)), folds)| HeadScores {
            name: (*name).to_owned(),
            auroc: auroc(&p, &y).unwrap_or(0.5),
            brier: brier(&p, &y),
            log_loss: log_loss(&p, &y),
            auroc_per_fold: folds,
            calibration: calibration(&p, &y, cfg.bins),
        })
        .collect();
    let effort = [View::Fix, View::Text]
        .into_iter()
        .map(|view| effort_scores(data, cfg, &fold_of, view))
        .collect();
    let new_agents = new_agents(data, cfg, &fold_of);
    EvalReport {
        source: data.source.clone(),
        folds: cfg.folds,
        seed: cfg.seed,
        tasks: data.tasks.len(),
        agents: data.agents.len(),
        responses: data.responses.len(),
        heads,
        effort,
        new_agents,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// Cross-validates the effort head under `view` on the folds of `fold_of`.
fn effort_scores(data: &Dataset, cfg: &EvalConfig, fold_of: &[usize], view: View) -> EffortScores {
    // (predicted minutes, annotated bucket, the training folds' mean ln minutes).
    let mut pairs: Vec<(f64, usize, f64)> = Vec::new();
    let mut majority_hits = 0usize;
    for k in 0..cfg.folds {
        let train: Vec<usize> = (0..data.tasks.len()).filter(|t| fold_of[*t] != k).collect();
        let Some(effort) = fit_effort(data, &train, view, &cfg.train) else {
            continue;
        };
        let mut counts = [0usize; TIME_BUCKETS.len()];
        let mut mean_log = 0.0;
        for &t in &train {
            if let Some(b) = data.tasks[t].time_bucket() {
                counts[b] += 1;
                mean_log += TIME_BUCKETS[b].minutes.ln();
            }
        }
        mean_log /= counts.iter().sum::<usize>().max(1) as f64;
        let majority = (0..counts.len()).max_by_key(|b| counts[*b]).unwrap_or(0);
        for (t, task) in data.tasks.iter().enumerate() {
            if let (true, Some(b)) = (fold_of[t] == k, task.time_bucket()) {
                pairs.push((effort.minutes(task), b, mean_log));
                majority_hits += usize::from(b == majority);
            }
        }
    }
    let n = pairs.len().max(1) as f64;
    let truth_log = |b: usize| TIME_BUCKETS[b].minutes.ln();
    let hits = pairs
        .iter()
        .filter(|(m, b, _)| bucket_of_minutes(*m) == *b)
        .count();
    let (minutes, buckets): (Vec<f64>, Vec<f64>) =
        pairs.iter().map(|(m, b, _)| (*m, *b as f64)).unzip();
    EffortScores {
        view,
        tasks: pairs.len(),
        bucket_accuracy: hits as f64 / n,
        majority_accuracy: majority_hits as f64 / n,
        spearman: spearman(&minutes, &buckets),
        mae_log_minutes: pairs
            .iter()
            .map(|(m, b, _)| (m.ln() - truth_log(*b)).abs())
            .sum::<f64>()
            / n,
        mae_log_minutes_mean_baseline: pairs
            .iter()
            .map(|(_, b, mean)| (mean - truth_log(*b)).abs())
            .sum::<f64>()
            / n,
    }
}

/// Forecasts and outcomes of every response on a held-out task.
fn forecast_held(data: &Dataset, head: &Head, held: &[bool]) -> (Vec<f64>, Vec<bool>) {
    let beta: Vec<f64> = data
        .tasks
        .iter()
        .enumerate()
        .map(|(t, task)| if held[t] { head.difficulty(task) } else { 0.0 })
        .collect();
    data.responses
        .iter()
        .filter(|r| held[r.task as usize])
        .map(|r| {
            let p = head.p_resolve(head.theta[r.agent as usize], beta[r.task as usize]);
            (p, r.resolved)
        })
        .unzip()
}

/// Outcomes seen before forecasting, for the online-ability check.
const SEEN: [usize; 6] = [0, 5, 10, 20, 50, 100];

/// Holds out every fifth agent (by a seeded shuffle) and the tasks of fold 0; fits the fix head
/// on the rest; then for each held-out agent learns θ online from its first `k` outcomes on
/// training tasks (in a seeded order) and forecasts its outcomes on the held-out tasks.
fn new_agents(data: &Dataset, cfg: &EvalConfig, fold_of: &[usize]) -> NewAgentScores {
    let mut agents: Vec<usize> = (0..data.agents.len()).collect();
    let mut rng = SplitMix(cfg.seed ^ 0xa9e7);
    rng.shuffle(&mut agents);
    let hidden: Vec<usize> = agents.iter().copied().step_by(5).collect();
    let mut is_hidden = vec![false; data.agents.len()];
    hidden.iter().for_each(|a| is_hidden[*a] = true);
    let train_tasks: Vec<usize> = (0..data.tasks.len()).filter(|t| fold_of[*t] != 0).collect();
    let held: Vec<bool> = fold_of.iter().map(|f| *f == 0).collect();
    // The fit sees the hidden agents' outcomes on no task.
    let visible = Dataset {
        responses: data
            .responses
            .iter()
            .filter(|r| !is_hidden[r.agent as usize])
            .copied()
            .collect(),
        ..data.clone()
    };
    let head = fit_head(
        &visible,
        &train_tasks,
        Features::Task(View::Fix),
        &cfg.train,
    );
    let full = fit_head(data, &train_tasks, Features::Task(View::Fix), &cfg.train);
    let beta: Vec<f64> = data.tasks.iter().map(|t| head.difficulty(t)).collect();
    let full_beta: Vec<f64> = data.tasks.iter().map(|t| full.difficulty(t)).collect();
    let mut by_seen: Vec<(Vec<f64>, Vec<bool>)> = vec![Default::default(); SEEN.len()];
    let (mut fp, mut fy) = (Vec::new(), Vec::new());
    // The prior: the visible agents' abilities.
    let visible_theta: Vec<f64> = (0..data.agents.len())
        .filter(|a| !is_hidden[*a])
        .map(|a| head.theta[a])
        .collect();
    let visible_head = Head {
        theta: visible_theta,
        ..head.clone()
    };
    for &a in &hidden {
        let mut seen: Vec<(usize, bool)> = data
            .responses
            .iter()
            .filter(|r| r.agent as usize == a && !held[r.task as usize])
            .map(|r| (r.task as usize, r.resolved))
            .collect();
        rng.shuffle(&mut seen);
        let test: Vec<(usize, bool)> = data
            .responses
            .iter()
            .filter(|r| r.agent as usize == a && held[r.task as usize])
            .map(|r| (r.task as usize, r.resolved))
            .collect();
        let mut ability = Ability::for_head(&visible_head);
        let mut fed = 0;
        for (i, &k) in SEEN.iter().enumerate() {
            while fed < k.min(seen.len()) {
                let (t, y) = seen[fed];
                ability.observe(beta[t], y);
                fed += 1;
            }
            for &(t, y) in &test {
                by_seen[i].0.push(ability.p_resolve(beta[t]));
                by_seen[i].1.push(y);
            }
        }
        for &(t, y) in &test {
            fp.push(full.p_resolve(full.theta[a], full_beta[t]));
            fy.push(y);
        }
    }
    NewAgentScores {
        agents: hidden.len(),
        by_outcomes_seen: SEEN
            .iter()
            .zip(by_seen)
            .map(|(k, (p, y))| (*k, auroc(&p, &y).unwrap_or(0.5), brier(&p, &y)))
            .collect(),
        fitted_auroc: auroc(&fp, &fy).unwrap_or(0.5),
        fitted_brier: brier(&fp, &fy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_are_even_seeded_and_cover_every_task() {
        let f = deal_folds(393, 5, 23);
        let mut counts = [0; 5];
        f.iter().for_each(|k| counts[*k] += 1);
        assert!(counts.iter().all(|c| *c == 78 || *c == 79), "{counts:?}");
        assert_eq!(f, deal_folds(393, 5, 23));
        assert_ne!(f, deal_folds(393, 5, 24));
    }
}

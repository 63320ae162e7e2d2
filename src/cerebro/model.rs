//! The trained model: item-response heads (`P(resolve) = σ(θ_agent − β_task)`, β from the
//! task's features), the effort head, and the online ability of an agent never seen in
//! training. Saved as one JSON file and read back without retraining.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CerebroError;
use super::encoder::{Encoder, Sparse};
use super::facts::{TIME_BUCKETS, TaskFacts, bucket_of_minutes};
use super::features::{View, raw};
use super::train::{Features, TrainConfig, sigmoid};

/// Version of the file format; a file of another version is refused with a hint to retrain.
pub const FORMAT: u32 = 1;

/// One item-response head.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// The view its features read; `None` for the ability-only baseline.
    pub view: Option<View>,
    pub encoder: Encoder,
    pub weights: Vec<f64>,
    pub bias: f64,
    /// Ability per agent, in the model's agent order.
    pub theta: Vec<f64>,
    /// Variance of the training tasks' β around what their features say.
    pub residual_var: f64,
}

impl Head {
    pub fn new(
        features: Features,
        encoder: Encoder,
        weights: Vec<f64>,
        bias: f64,
        theta: Vec<f64>,
        residual_var: f64,
    ) -> Head {
        let view = match features {
            Features::Task(v) => Some(v),
            Features::None => None,
        };
        Head {
            view,
            encoder,
            weights,
            bias,
            theta,
            residual_var,
        }
    }

    /// How much a new task's forecast logit is shrunk: its β is uncertain by `residual_var`,
    /// and `E[σ(z − u)]` for `u ~ N(0, v)` is close to `σ(z / √(1 + πv/8))`.
    pub fn shrink(&self) -> f64 {
        1.0 / (1.0 + std::f64::consts::PI * self.residual_var / 8.0).sqrt()
    }

    /// P(resolve) for an agent of ability `theta` on a new task of difficulty `beta`.
    pub fn p_resolve(&self, theta: f64, beta: f64) -> f64 {
        sigmoid((theta - beta) * self.shrink())
    }

    /// β of an encoded task.
    pub fn difficulty_of(&self, x: &Sparse) -> f64 {
        self.bias
            + x.iter()
                .map(|(i, v)| self.weights.get(*i as usize).map_or(0.0, |w| w * v))
                .sum::<f64>()
    }

    /// β of a task: higher is harder (logits).
    pub fn difficulty(&self, task: &TaskFacts) -> f64 {
        match self.view {
            Some(view) => self.difficulty_of(&self.encoder.encode(&raw(task, view))),
            None => self.bias,
        }
    }

    /// The abilities' mean and standard deviation: the prior of an agent never seen.
    pub fn ability_prior(&self) -> (f64, f64) {
        let n = self.theta.len().max(1) as f64;
        let mean = self.theta.iter().sum::<f64>() / n;
        let var = self.theta.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n;
        (mean, var.sqrt().max(0.1))
    }
}

/// An effort head: log minutes a human needs for the fix (SWE-bench Verified's time-to-fix
/// annotation), by ridge regression on a view's features (its encoder's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffortHead {
    pub encoder: Encoder,
    pub bias: f64,
    pub weights: Vec<f64>,
}

impl EffortHead {
    /// Estimated minutes for a human to fix `task`.
    pub fn minutes(&self, task: &TaskFacts) -> f64 {
        let x = self.encoder.encode(&raw(task, self.encoder.view));
        let log = self.bias
            + x.iter()
                .map(|(i, v)| self.weights.get(*i as usize).map_or(0.0, |w| w * v))
                .sum::<f64>();
        log.exp()
    }

    /// The time bucket's label for `task`.
    pub fn bucket(&self, task: &TaskFacts) -> &'static str {
        TIME_BUCKETS[bucket_of_minutes(self.minutes(task))].label
    }
}

/// What the model was trained on, and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub source: String,
    pub tasks: usize,
    pub responses: usize,
    pub config: TrainConfig,
    pub seconds: f64,
}

/// Cerebro's model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub format: u32,
    /// The agents of the training data, in θ order.
    pub agents: Vec<String>,
    /// Reads the fix (gold patch, tests): the validator's own tasks.
    pub fix: Head,
    /// Reads the statement and repository only: new issues, and the miner's `Forecast`.
    pub text: Head,
    /// Human minutes from the fix view, and from the statement alone.
    pub effort: Option<EffortHead>,
    pub effort_text: Option<EffortHead>,
    pub provenance: Provenance,
}

/// One task's forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskForecast {
    /// β (logits; higher is harder).
    pub difficulty: f64,
    /// P(resolve) for an agent of median ability in the training data.
    pub p_typical: f64,
    /// Minutes a human would need, from the effort head.
    pub human_minutes: Option<f64>,
    /// Which head answered (`fix` or `text`).
    pub head: View,
}

impl Model {
    /// The head that applies to `task`: `fix` when its gold patch is known, else `text`.
    pub fn head_for(&self, task: &TaskFacts) -> &Head {
        if task.knows_fix() {
            &self.fix
        } else {
            &self.text
        }
    }

    /// The ability of a known agent under `head`.
    pub fn theta(&self, head: &Head, agent: &str) -> Option<f64> {
        let i = self.agents.iter().position(|a| a == agent)?;
        head.theta.get(i).copied()
    }

    /// The median ability under `head`.
    pub fn median_theta(head: &Head) -> f64 {
        let mut t = head.theta.clone();
        t.sort_by(f64::total_cmp);
        t.get(t.len() / 2).copied().unwrap_or(0.0)
    }

    /// The forecast for `task` (any agent).
    pub fn forecast(&self, task: &TaskFacts) -> TaskForecast {
        let head = self.head_for(task);
        let difficulty = head.difficulty(task);
        TaskForecast {
            difficulty,
            p_typical: head.p_resolve(Model::median_theta(head), difficulty),
            human_minutes: if task.knows_fix() {
                self.effort.as_ref()
            } else {
                self.effort_text.as_ref()
            }
            .map(|e| e.minutes(task)),
            head: head.view.unwrap_or(View::Text),
        }
    }

    /// P(resolve) of a known agent on `task`; `None` for an agent the model does not know.
    pub fn p_resolve(&self, task: &TaskFacts, agent: &str) -> Option<f64> {
        let head = self.head_for(task);
        let theta = self.theta(head, agent)?;
        Some(head.p_resolve(theta, head.difficulty(task)))
    }

    /// Writes the model as JSON (atomically: a temporary file renamed).
    pub fn save(&self, path: &Path) -> Result<(), CerebroError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CerebroError::io(dir, e))?;
        }
        let tmp = path.with_extension("partial");
        let bytes = serde_json::to_vec(self).map_err(|e| CerebroError::Data(e.to_string()))?;
        std::fs::write(&tmp, bytes).map_err(|e| CerebroError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| CerebroError::io(path, e))
    }

    /// Reads a model written by [`Model::save`].
    pub fn load(path: &Path) -> Result<Model, CerebroError> {
        let bytes = std::fs::read(path).map_err(|e| CerebroError::io(path, e))?;
        let model: Model = serde_json::from_slice(&bytes).map_err(|e| {
            CerebroError::Model(format!("{}: not a Cerebro model: {e}", path.display()))
        })?;
        if model.format != FORMAT {
            return Err(CerebroError::Model(format!(
                "{}: model format {} (this agentao reads {FORMAT}); train it again",
                path.display(),
                model.format
            )));
        }
        Ok(model)
    }
}

/// The ability of an agent the model has not seen, estimated online from its outcomes: the
/// maximum a posteriori θ under a normal prior (the training abilities' mean and spread), one
/// Newton solve per outcome. Before any outcome it is the prior's mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ability {
    /// The head's [`Head::shrink`]: outcomes are read as `σ(scale·(θ − β))`.
    pub scale: f64,
    pub prior_mean: f64,
    pub prior_sd: f64,
    /// (β of the task, resolved) of each outcome seen.
    pub outcomes: Vec<(f64, bool)>,
    pub theta: f64,
}

impl Ability {
    /// A new agent under `head`: the prior from its abilities.
    pub fn for_head(head: &Head) -> Ability {
        Ability {
            scale: head.shrink(),
            ..Ability::new(head.ability_prior())
        }
    }

    pub fn new(prior: (f64, f64)) -> Ability {
        Ability {
            scale: 1.0,
            prior_mean: prior.0,
            prior_sd: prior.1,
            outcomes: Vec::new(),
            theta: prior.0,
        }
    }

    /// Takes one outcome on a task of difficulty `beta` and re-estimates θ.
    pub fn observe(&mut self, beta: f64, resolved: bool) {
        self.outcomes.push((beta, resolved));
        let prec = 1.0 / (self.prior_sd * self.prior_sd);
        let mut t = self.theta;
        for _ in 0..50 {
            let (mut g, mut h) = (-(t - self.prior_mean) * prec, -prec);
            let k = self.scale;
            for &(b, y) in &self.outcomes {
                let p = sigmoid(k * (t - b));
                g += k * (f64::from(u8::from(y)) - p);
                h -= k * k * p * (1.0 - p);
            }
            let step = (g / h).clamp(-2.0, 2.0);
            t -= step;
            if step.abs() < 1e-10 {
                break;
            }
        }
        self.theta = t;
    }

    /// P(resolve) of this agent on a task of difficulty `beta`.
    pub fn p_resolve(&self, beta: f64) -> f64 {
        sigmoid(self.scale * (self.theta - beta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cerebro::eval::SplitMix;

    #[test]
    fn an_unseen_agents_ability_is_learnt_from_its_outcomes() {
        // Outcomes drawn from σ(1.5 − β) over spread difficulties.
        let mut rng = SplitMix(7);
        let mut ability = Ability::new((0.0, 1.0));
        assert_eq!(ability.theta, 0.0);
        for i in 0..2000 {
            let beta = (i % 41) as f64 / 10.0 - 2.0;
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            ability.observe(beta, u < sigmoid(1.5 - beta));
        }
        assert!((ability.theta - 1.5).abs() < 0.15, "{}", ability.theta);
        assert!(ability.p_resolve(1.5) > 0.45 && ability.p_resolve(1.5) < 0.55);
        // A few failures pull a fresh agent below the prior; the prior keeps it finite.
        let mut weak = Ability::new((0.0, 1.0));
        for _ in 0..3 {
            weak.observe(-1.0, false);
        }
        assert!(
            weak.theta < -0.5 && weak.theta.is_finite(),
            "{}",
            weak.theta
        );
    }

    #[test]
    fn a_saved_model_loads_and_another_format_is_refused() {
        let model = crate::cerebro::shipped_model().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        model.save(&path).unwrap();
        assert_eq!(Model::load(&path).unwrap().agents, model.agents);
        let mut old: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        old["format"] = 0.into();
        std::fs::write(&path, old.to_string()).unwrap();
        let e = Model::load(&path).unwrap_err().to_string();
        assert!(e.contains("train it again"), "{e}");
        std::fs::write(&path, "{").unwrap();
        assert!(Model::load(&path).is_err());
    }
}

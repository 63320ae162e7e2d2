//! Forecasts in the subnet, kept apart from the coding score until a weight split is decided.
//!
//! - The miner answers the `Forecast` synapse with Cerebro ([`MinerForecaster`]): from the
//!   statement and repository alone (the text head; a miner never holds the fix), the
//!   probability that its own answer to that task will resolve it, the task's difficulty (β)
//!   and the time a human would need (`expected_seconds`, from the text effort head, which is
//!   hardly better than the most common bucket: agents' own times are not in the data).
//! - The validator ([`Forecasting`]) asks every miner of a round for its forecast before it
//!   sends the task, makes its own (the fix head, which reads the gold patch, and the miner's
//!   ability learnt online from its outcomes), writes both into the round's dataset record,
//!   and scores each miner's forecast against that miner's outcome with the Brier rule of the
//!   Numinous seed: the forecast clipped to [0.01, 0.99], 0.5 imputed when the miner gave none
//!   (no answer, or an answer without a probability), each miner's score the mean over its
//!   last 101 events, lower is better, the best miner the winner.
//! - An outcome that failed for the machine (`environment_error`) is no event: neither side is
//!   scored on it. The book lives in `validator/forecasts.json` (`config::Paths::forecasts`).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cerebro::{Ability, Model, TaskFacts};
use crate::dataset::Record;
use crate::subnet::{AxonTarget, Dendrite, Forecast};
use crate::tasks::Task;

/// Forecasts are clipped to this range before scoring.
pub const CLIP: (f64, f64) = (0.01, 0.99);
/// The forecast a miner that gave none is scored with.
pub const IMPUTED: f64 = 0.5;
/// Events a miner's score averages over (its most recent ones).
pub const WINDOW: usize = 101;
/// How long a miner has to answer a `Forecast`.
pub const FORECAST_TIMEOUT: Duration = Duration::from_secs(12);

/// The Brier score of one event: `(p − y)²` with `p` clipped, or [`IMPUTED`] when missing.
pub fn brier_event(forecast: Option<f64>, resolved: bool) -> f64 {
    let p = forecast
        .filter(|p| p.is_finite())
        .map_or(IMPUTED, |p| p.clamp(CLIP.0, CLIP.1));
    (p - f64::from(u8::from(resolved))).powi(2)
}

/// A miner's answer to `Forecast`, from Cerebro's text head.
#[derive(Debug, Clone)]
pub struct MinerForecaster {
    pub model: Arc<Model>,
    /// The ability the miner claims for its own agent; `None` is the median of the agents the
    /// model was trained on.
    pub theta: Option<f64>,
}

impl MinerForecaster {
    /// The ability of `agent` under the text head, when the model knows that agent.
    pub fn known_agent(model: Arc<Model>, agent: &str) -> Option<MinerForecaster> {
        let theta = model.theta(&model.text, agent)?;
        Some(MinerForecaster {
            model,
            theta: Some(theta),
        })
    }

    /// Fills the answer fields of `question`.
    pub fn answer(&self, mut question: Forecast) -> Forecast {
        let facts = TaskFacts::from_statement(
            &question.task_id,
            &question.repo,
            &question.problem_statement,
        );
        let head = self.model.head_for(&facts);
        let forecast = self.model.forecast(&facts);
        let theta = self.theta.unwrap_or_else(|| Model::median_theta(head));
        question.solve_probability = Some(head.p_resolve(theta, forecast.difficulty));
        question.difficulty = Some(forecast.difficulty);
        question.expected_seconds = forecast.human_minutes.map(|m| m * 60.0);
        question
    }

    /// `axon` answering `Forecast` with this forecaster.
    pub fn serve_on(self, axon: crate::subnet::Axon) -> crate::subnet::Axon {
        let me = Arc::new(self);
        axon.forecast(move |s| {
            let me = me.clone();
            async move { me.answer(s.body) }
        })
    }
}

/// One scored forecast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub task_id: String,
    /// The miner's forecast as it came (`None`: it gave none).
    pub forecast: Option<f64>,
    pub resolved: bool,
    pub brier: f64,
}

/// One miner's window and the validator's estimate of its agent's ability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinerBook {
    pub events: VecDeque<Event>,
    pub ability: Ability,
}

/// A miner's standing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    pub hotkey: String,
    /// Mean Brier over the window (lower is better).
    pub brier: f64,
    pub events: usize,
}

/// Every miner's window, persisted as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ForecastBook {
    pub miners: BTreeMap<String, MinerBook>,
    #[serde(skip)]
    path: PathBuf,
}

impl ForecastBook {
    /// Loads `path` (empty when missing or unreadable: the book is soft state, like the
    /// moving averages).
    pub fn load(path: &Path) -> ForecastBook {
        let mut book: ForecastBook = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        book.path = path.to_path_buf();
        book
    }

    /// Writes the file atomically.
    pub fn save(&self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.partial");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).expect("serialisable"))?;
        std::fs::rename(&tmp, &self.path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Scores one event and keeps the last [`WINDOW`]; the event's Brier.
    pub fn record(
        &mut self,
        hotkey: &str,
        fresh: impl FnOnce() -> Ability,
        task_id: &str,
        forecast: Option<f64>,
        resolved: bool,
    ) -> f64 {
        let brier = brier_event(forecast, resolved);
        let book = self
            .miners
            .entry(hotkey.to_owned())
            .or_insert_with(|| MinerBook {
                events: VecDeque::new(),
                ability: fresh(),
            });
        book.events.push_back(Event {
            task_id: task_id.to_owned(),
            forecast,
            resolved,
            brier,
        });
        while book.events.len() > WINDOW {
            book.events.pop_front();
        }
        brier
    }

    /// A miner's mean Brier over its window; `None` before its first event.
    pub fn brier(&self, hotkey: &str) -> Option<f64> {
        let events = &self.miners.get(hotkey)?.events;
        (!events.is_empty())
            .then(|| events.iter().map(|e| e.brier).sum::<f64>() / events.len() as f64)
    }

    /// Every miner with events, best (lowest Brier) first; the first is the winner.
    pub fn standings(&self) -> Vec<Standing> {
        let mut out: Vec<Standing> = self
            .miners
            .iter()
            .filter_map(|(h, b)| {
                Some(Standing {
                    hotkey: h.clone(),
                    brier: self.brier(h)?,
                    events: b.events.len(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.brier.total_cmp(&b.brier).then(a.hotkey.cmp(&b.hotkey)));
        out
    }
}

/// The validator's side: the model, the book, and how long miners have to answer.
pub struct Forecasting {
    pub model: Arc<Model>,
    pub book: Mutex<ForecastBook>,
    pub timeout: Duration,
}

/// What the validator knew before a miner's answer was judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    /// β of the task under the fix head.
    pub beta: f64,
    /// The validator's P(resolve) for this miner.
    pub p_resolve: f64,
    /// The miner's own forecast.
    pub miner: Option<f64>,
}

impl Forecasting {
    pub fn new(model: Arc<Model>, book_path: &Path) -> Forecasting {
        Forecasting {
            model,
            book: Mutex::new(ForecastBook::load(book_path)),
            timeout: FORECAST_TIMEOUT,
        }
    }

    /// The question a miner gets for `task`: its public fields only.
    pub fn question(task: &Task) -> Forecast {
        Forecast {
            task_id: task.instance_id.clone(),
            problem_statement: task.problem_statement.clone(),
            repo: task.repo.clone(),
            ..Forecast::default()
        }
    }

    /// Asks every target for its forecast of `task`; `None` where none came back.
    pub async fn ask(
        &self,
        dendrite: &Dendrite,
        targets: &[AxonTarget],
        task: &Task,
    ) -> Vec<Option<f64>> {
        let answers = dendrite
            .fan_out(targets, &Forecasting::question(task), self.timeout)
            .await;
        answers
            .into_iter()
            .map(|a| a.synapse.and_then(|s| s.body.solve_probability))
            .collect()
    }

    /// What the validator forecasts for `hotkey` on `task`, with the miner's own forecast.
    pub fn prior(&self, hotkey: &str, task: &Task, miner: Option<f64>) -> Prior {
        let facts = TaskFacts::from_task(task);
        let head = self.model.head_for(&facts);
        let beta = head.difficulty(&facts);
        let book = self.book.lock().expect("forecast book");
        let p_resolve = book
            .miners
            .get(hotkey)
            .map_or_else(|| Ability::for_head(head), |b| b.ability.clone())
            .p_resolve(beta);
        Prior {
            beta,
            p_resolve,
            miner,
        }
    }

    /// Writes the forecasts into `record`, then, when the outcome is the miner's, scores the
    /// miner's forecast and updates the ability the validator holds for it.
    pub fn settle(&self, record: &mut Record, prior: Prior, outcome_is_miners: bool) {
        record.forecast_difficulty = Some(prior.beta);
        record.forecast_p_resolve = Some(prior.p_resolve);
        record.miner_forecast = prior.miner;
        if !outcome_is_miners {
            return;
        }
        let head = &self.model.fix;
        let mut book = self.book.lock().expect("forecast book");
        let brier = book.record(
            &record.miner_hotkey,
            || Ability::for_head(head),
            &record.instance_id,
            prior.miner,
            record.resolved,
        );
        if let Some(b) = book.miners.get_mut(&record.miner_hotkey) {
            b.ability.observe(prior.beta, record.resolved);
        }
        tracing::info!(miner = %record.miner_hotkey, forecast = ?prior.miner,
            validator = prior.p_resolve, resolved = record.resolved, brier, "forecast scored");
    }

    /// Saves the book.
    pub fn save(&self) -> std::io::Result<()> {
        self.book.lock().expect("forecast book").save()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_brier_rule_clips_imputes_and_windows() {
        assert_eq!(brier_event(None, true), 0.25);
        assert_eq!(brier_event(Some(f64::NAN), false), 0.25);
        assert!((brier_event(Some(1.0), true) - 0.0001).abs() < 1e-12);
        assert!((brier_event(Some(0.0), true) - 0.9801).abs() < 1e-12);
        assert!((brier_event(Some(0.7), false) - 0.49).abs() < 1e-12);
        let mut book = ForecastBook::default();
        let fresh = || Ability::new((0.0, 1.0));
        for i in 0..150 {
            // A miner that is always sure and right, then wrong for the last 10.
            let resolved = i % 2 == 0;
            let p = if i < 140 { resolved } else { !resolved };
            book.record("a", fresh, "t", Some(f64::from(u8::from(p))), resolved);
            book.record("silent", fresh, "t", None, resolved);
        }
        assert_eq!(book.miners["a"].events.len(), WINDOW);
        let want = (91.0 * 0.0001 + 10.0 * 0.9801) / 101.0;
        assert!((book.brier("a").unwrap() - want).abs() < 1e-12);
        assert_eq!(book.brier("silent"), Some(0.25));
        assert_eq!(book.brier("nobody"), None);
        let s = book.standings();
        assert_eq!(s[0].hotkey, "a");
        assert_eq!(s[1].events, WINDOW);
    }
}

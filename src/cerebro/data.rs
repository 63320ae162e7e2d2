//! The training data: tasks (`tasks.jsonl`) and who solved them (`responses.csv`), read from a
//! directory in the layout of the shipped copy, or from that copy compiled into the binary.
//!
//! Layout: `tasks.jsonl` (one [`TaskFacts`] a line) and `responses.csv` with the header
//! `agent,instance_id,resolved,date` (resolved is 0 or 1), each plain or gzipped (`.gz`).
//!
//! agentao's own dataset records (`dataset/records.jsonl`) add to it ([`Dataset::add_records`]):
//! each miner is an agent, each record's task a task, its verdict the outcome.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::CerebroError;
use super::facts::TaskFacts;

/// The shipped copy (`data/cerebro/`), gzipped.
const SHIPPED_TASKS: &[u8] = include_bytes!("../../data/cerebro/tasks.jsonl.gz");
const SHIPPED_RESPONSES: &[u8] = include_bytes!("../../data/cerebro/responses.csv.gz");

/// One observed outcome: agent `agent` on task `task` (indices into the dataset's lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub agent: u32,
    pub task: u32,
    pub resolved: bool,
}

/// Tasks, agents and outcomes.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub tasks: Vec<TaskFacts>,
    pub agents: Vec<String>,
    pub responses: Vec<Response>,
    /// Where it was read from (a directory, or `shipped`).
    pub source: String,
}

fn gunzip(name: &str, bytes: &[u8]) -> Result<String, CerebroError> {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .map_err(|e| CerebroError::Data(format!("{name}: not gzipped UTF-8 text: {e}")))?;
    Ok(out)
}

/// `dir/name`, or `dir/name.gz` unpacked.
fn read_text(dir: &Path, name: &str) -> Result<String, CerebroError> {
    let plain = dir.join(name);
    if plain.is_file() {
        return std::fs::read_to_string(&plain).map_err(|e| CerebroError::io(&plain, e));
    }
    let gz = dir.join(format!("{name}.gz"));
    if gz.is_file() {
        let bytes = std::fs::read(&gz).map_err(|e| CerebroError::io(&gz, e))?;
        return gunzip(&gz.display().to_string(), &bytes);
    }
    Err(CerebroError::Data(format!(
        "{}: neither {name} nor {name}.gz is there",
        dir.display()
    )))
}

/// Parses task rows; a bad row is an error naming `name` and its line.
pub fn parse_tasks(name: &str, text: &str) -> Result<Vec<TaskFacts>, CerebroError> {
    crate::jsonl::parse(text).map_err(|e| CerebroError::Line {
        file: name.to_owned(),
        line: e.line,
        reason: e.reason,
    })
}

impl Dataset {
    /// The copy shipped in the binary.
    pub fn shipped() -> Result<Dataset, CerebroError> {
        let tasks = gunzip("shipped tasks.jsonl.gz", SHIPPED_TASKS)?;
        let responses = gunzip("shipped responses.csv.gz", SHIPPED_RESPONSES)?;
        Dataset::parse(&tasks, &responses, "shipped")
    }

    /// A directory in the shipped copy's layout.
    pub fn load(dir: &Path) -> Result<Dataset, CerebroError> {
        if !dir.is_dir() {
            return Err(CerebroError::Data(format!(
                "{}: no such directory (it should hold tasks.jsonl and responses.csv)",
                dir.display()
            )));
        }
        let tasks = read_text(dir, "tasks.jsonl")?;
        let responses = read_text(dir, "responses.csv")?;
        Dataset::parse(&tasks, &responses, &dir.display().to_string())
    }

    /// Tasks and responses from their texts. Responses naming an unknown task, duplicate
    /// tasks, and malformed lines are errors naming the line.
    pub fn parse(tasks: &str, responses: &str, source: &str) -> Result<Dataset, CerebroError> {
        let tasks = parse_tasks("tasks.jsonl", tasks)?;
        let mut by_id = HashMap::new();
        for (i, t) in tasks.iter().enumerate() {
            if by_id.insert(t.instance_id.clone(), i as u32).is_some() {
                return Err(CerebroError::Data(format!(
                    "tasks.jsonl: task {} appears twice",
                    t.instance_id
                )));
            }
        }
        let bad = |line: usize, reason: String| CerebroError::Line {
            file: "responses.csv".into(),
            line,
            reason,
        };
        let mut lines = responses.lines().enumerate();
        let header: Vec<&str> = lines
            .next()
            .map(|(_, h)| h.trim().split(',').collect())
            .unwrap_or_default();
        let col = |name: &str| {
            header
                .iter()
                .position(|h| *h == name)
                .ok_or_else(|| bad(1, format!("no column {name:?} in the header")))
        };
        let (ca, ct, cr) = (col("agent")?, col("instance_id")?, col("resolved")?);
        let mut agents: Vec<String> = Vec::new();
        let mut agent_ids: HashMap<String, u32> = HashMap::new();
        let mut out = Vec::new();
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let cells: Vec<&str> = line.trim().split(',').collect();
            if cells.len() != header.len() {
                return Err(bad(
                    i + 1,
                    format!("{} cells, the header has {}", cells.len(), header.len()),
                ));
            }
            let task = *by_id
                .get(cells[ct])
                .ok_or_else(|| bad(i + 1, format!("unknown task {:?}", cells[ct])))?;
            let resolved = match cells[cr] {
                "1" => true,
                "0" => false,
                other => return Err(bad(i + 1, format!("resolved is {other:?}, not 0 or 1"))),
            };
            let agent = *agent_ids.entry(cells[ca].to_owned()).or_insert_with(|| {
                agents.push(cells[ca].to_owned());
                (agents.len() - 1) as u32
            });
            out.push(Response {
                agent,
                task,
                resolved,
            });
        }
        if out.is_empty() {
            return Err(CerebroError::Data("responses.csv: no responses".into()));
        }
        Ok(Dataset {
            tasks,
            agents,
            responses: out,
            source: source.to_owned(),
        })
    }
}

/// The fields of a dataset record (`dataset::Record`) that training reads.
#[derive(Debug, serde::Deserialize)]
struct RecordRow {
    instance_id: String,
    #[serde(default)]
    repo: String,
    #[serde(default)]
    problem_statement: String,
    #[serde(default)]
    hints_text: String,
    /// The gold fix in today's layout (the miner's patch is `model_patch`).
    #[serde(default)]
    patch: String,
    /// The gold fix in the first layout (where `patch` was the miner's).
    #[serde(default)]
    gold_patch: String,
    #[serde(rename = "FAIL_TO_PASS", default)]
    fail_to_pass: String,
    #[serde(rename = "PASS_TO_PASS", default)]
    pass_to_pass: String,
    #[serde(default)]
    mutation_kind: String,
    /// SWE-bench's level today; the forge's features as JSON in the first layout.
    #[serde(default)]
    difficulty: String,
    #[serde(default)]
    difficulty_features: String,
    miner_hotkey: String,
    resolved: bool,
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    model_error: bool,
}

impl Dataset {
    /// Adds the outcomes of agentao's dataset records (JSON Lines, as `dataset/records.jsonl`
    /// holds them): the miner's hotkey is the agent. Records that say nothing about the agent
    /// are left out: the machine's failures (`environment_error`), calls that brought back no
    /// answer, and answers whose model was down. Returns how many outcomes were added.
    pub fn add_records(&mut self, name: &str, text: &str) -> Result<usize, CerebroError> {
        let rows: Vec<RecordRow> = crate::jsonl::parse(text).map_err(|e| CerebroError::Line {
            file: name.to_owned(),
            line: e.line,
            reason: e.reason,
        })?;
        let list = |s: &str| serde_json::from_str::<Vec<String>>(s).unwrap_or_default();
        let mut tasks: HashMap<String, u32> = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.instance_id.clone(), i as u32))
            .collect();
        let mut agents: HashMap<String, u32> = self
            .agents
            .iter()
            .enumerate()
            .map(|(i, a)| (a.clone(), i as u32))
            .collect();
        let before = self.responses.len();
        for r in rows {
            let unanswered = [
                "environment_error",
                "unreachable",
                "timeout",
                "protocol_error",
            ];
            if r.model_error || unanswered.contains(&r.outcome.as_str()) {
                continue;
            }
            let task = *tasks.entry(r.instance_id.clone()).or_insert_with(|| {
                self.tasks.push(TaskFacts {
                    instance_id: r.instance_id.clone(),
                    repo: r.repo.clone(),
                    problem_statement: r.problem_statement.clone(),
                    hints_text: r.hints_text.clone(),
                    patch: if r.gold_patch.is_empty() {
                        r.patch.clone()
                    } else {
                        r.gold_patch.clone()
                    },
                    test_patch: String::new(),
                    fail_to_pass: list(&r.fail_to_pass),
                    pass_to_pass: list(&r.pass_to_pass),
                    mutation_kind: r.mutation_kind.clone(),
                    difficulty: serde_json::from_str(&r.difficulty_features)
                        .or_else(|_| serde_json::from_str(&r.difficulty))
                        .unwrap_or_else(|_| r.difficulty.clone().into()),
                });
                (self.tasks.len() - 1) as u32
            });
            let agent = *agents.entry(r.miner_hotkey.clone()).or_insert_with(|| {
                self.agents.push(r.miner_hotkey.clone());
                (self.agents.len() - 1) as u32
            });
            self.responses.push(Response {
                agent,
                task,
                resolved: r.resolved,
            });
        }
        self.source = format!("{} + {name}", self.source);
        Ok(self.responses.len() - before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_copy_reads_whole() {
        let d = Dataset::shipped().unwrap();
        assert_eq!(d.tasks.len(), 393);
        assert_eq!(d.agents.len(), 134);
        assert_eq!(d.responses.len(), 52_662);
        let rate = d.responses.iter().filter(|r| r.resolved).count() as f64 / 52_662.0;
        assert!((0.2..0.6).contains(&rate), "{rate}");
        assert!(d.tasks.iter().all(|t| t.time_bucket().is_some()));
    }

    #[test]
    fn bad_rows_name_their_file_and_line() {
        let tasks = "{\"instance_id\":\"a\"}\n{\"instance_id\":\"b\"}\n";
        let ok = "agent,instance_id,resolved,date\nx,a,1,2024\ny,b,0,2024\n";
        let d = Dataset::parse(tasks, ok, "t").unwrap();
        assert_eq!(d.agents, ["x", "y"]);
        let cases = [
            ("agent,instance_id,resolved\nx,a,2\n", "responses.csv:2"),
            (
                "agent,instance_id,resolved\nx,a,1\n\nx,zz,1\n",
                "responses.csv:4",
            ),
            ("agent,instance_id\nx,a\n", "responses.csv:1"),
            ("agent,instance_id,resolved\nx,a\n", "responses.csv:2"),
        ];
        for (csv, want) in cases {
            let e = Dataset::parse(tasks, csv, "t").unwrap_err().to_string();
            assert!(e.starts_with(want), "{e}");
        }
        let e = Dataset::parse("{\"instance_id\":\"a\"}\nnot json\n", ok, "t").unwrap_err();
        assert!(e.to_string().starts_with("tasks.jsonl:2:"), "{e}");
    }

    #[test]
    fn dataset_records_add_their_miners_and_tasks() {
        let mut d = Dataset::parse(
            "{\"instance_id\":\"a\"}\n",
            "agent,instance_id,resolved\nx,a,1\n",
            "t",
        )
        .unwrap();
        let row = |hotkey: &str, resolved: bool, outcome: &str| {
            let mut v = serde_json::json!({
                "instance_id": "demo__1.0-abc", "repo": "pypi/demo",
                "problem_statement": "s", "gold_patch": "diff",
                "FAIL_TO_PASS": "[\"t.py::a\"]", "PASS_TO_PASS": "[]",
                "mutation_kind": "compare_swap", "difficulty": "{\"function_lines\": 7}",
                "miner_hotkey": hotkey, "resolved": resolved, "outcome": outcome,
            });
            v["model_error"] = false.into();
            v.to_string()
        };
        let text = [
            row("5Fminer", true, "resolved"),
            row("5Fminer", false, "environment_error"),
            row("5Fother", false, "unresolved"),
            row("5Fgone", false, "unreachable"),
        ]
        .join("\n");
        assert_eq!(d.add_records("records.jsonl", &text).unwrap(), 2);
        assert_eq!(d.tasks.len(), 2);
        assert_eq!(d.agents, ["x", "5Fminer", "5Fother"]);
        let t = &d.tasks[1];
        assert_eq!(
            (t.fail_to_pass.len(), t.forge_number("function_lines")),
            (1, 7.0)
        );
        assert!(t.knows_fix());
        let e = d.add_records("records.jsonl", "{}\n").unwrap_err();
        assert!(e.to_string().starts_with("records.jsonl:1:"), "{e}");
    }
}

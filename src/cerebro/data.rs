//! The training data: tasks (`tasks.jsonl`) and who solved them (`responses.csv`), read from a
//! directory in the layout of the shipped copy, or from that copy compiled into the binary.
//!
//! Layout: `tasks.jsonl` (one [`TaskFacts`] a line) and `responses.csv` with the header
//! `agent,instance_id,resolved,date` (resolved is 0 or 1), each plain or gzipped (`.gz`).

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
}

//! The local task store: forged tasks and the forge's log of every package it tried, in one
//! SQLite file. Each task is written in a single statement, so a crash never leaves half a task.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::model::Task;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("task store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("task store: stored task {id} is unreadable: {reason}")]
    Corrupt { id: String, reason: String },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tasks (
    instance_id   TEXT PRIMARY KEY,
    package       TEXT NOT NULL,
    pypi_version  TEXT NOT NULL,
    mutation_kind TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    task          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_package ON tasks(package, pypi_version);
CREATE TABLE IF NOT EXISTS forge_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    package     TEXT NOT NULL,
    version     TEXT NOT NULL,
    status      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    candidates  INTEGER NOT NULL,
    validated   INTEGER NOT NULL,
    seconds     REAL NOT NULL
);
";

/// One line of the forge's log: a package tried and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForgeLogEntry {
    pub at: String,
    pub package: String,
    pub version: String,
    /// `ok` or `skipped`.
    pub status: String,
    pub reason: String,
    pub candidates: u32,
    pub validated: u32,
    pub seconds: f64,
}

/// A row of `tasks list`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSummary {
    pub instance_id: String,
    pub package: String,
    pub pypi_version: String,
    pub mutation_kind: String,
    pub created_at: String,
}

/// The SQLite task store.
pub struct TaskStore {
    conn: Connection,
    path: String,
}

impl TaskStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<TaskStore, StoreError> {
        let shown = path.display().to_string();
        let err = |source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(TaskStore { conn, path: shown })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Inserts or replaces a task.
    pub fn put(&self, task: &Task) -> Result<(), StoreError> {
        let json = serde_json::to_string(task).map_err(|e| StoreError::Corrupt {
            id: task.instance_id.clone(),
            reason: e.to_string(),
        })?;
        self.conn
            .execute(
                "INSERT OR REPLACE INTO tasks \
                 (instance_id, package, pypi_version, mutation_kind, created_at, task) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    task.instance_id,
                    task.package,
                    task.pypi_version,
                    task.mutation_kind,
                    task.created_at,
                    json
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The task with this id, if stored.
    pub fn get(&self, id: &str) -> Result<Option<Task>, StoreError> {
        let json: Option<String> = self
            .conn
            .query_row(
                "SELECT task FROM tasks WHERE instance_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        json.map(|j| decode(id, &j)).transpose()
    }

    /// Every task, oldest first, optionally of one package.
    pub fn all(&self, package: Option<&str>) -> Result<Vec<Task>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT instance_id, task FROM tasks WHERE (?1 IS NULL OR package = ?1) \
                 ORDER BY created_at, instance_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![package], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(|e| self.err(e))?;
            out.push(decode(&id, &json)?);
        }
        Ok(out)
    }

    /// One line per task.
    pub fn list(&self) -> Result<Vec<TaskSummary>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT instance_id, package, pypi_version, mutation_kind, created_at \
                 FROM tasks ORDER BY created_at, instance_id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TaskSummary {
                    instance_id: r.get(0)?,
                    package: r.get(1)?,
                    pypi_version: r.get(2)?,
                    mutation_kind: r.get(3)?,
                    created_at: r.get(4)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// Number of tasks stored for a package version.
    pub fn count_for(&self, package: &str, version: &str) -> Result<u32, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE package = ?1 AND pypi_version = ?2",
                params![package, version],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Appends a line to the forge log.
    pub fn log(&self, e: &ForgeLogEntry) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO forge_log (at, package, version, status, reason, candidates, validated, seconds) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    e.at,
                    e.package,
                    e.version,
                    e.status,
                    e.reason,
                    e.candidates,
                    e.validated,
                    e.seconds
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// The forge log, oldest first.
    pub fn forge_log(&self) -> Result<Vec<ForgeLogEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at, package, version, status, reason, candidates, validated, seconds \
                 FROM forge_log ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ForgeLogEntry {
                    at: r.get(0)?,
                    package: r.get(1)?,
                    version: r.get(2)?,
                    status: r.get(3)?,
                    reason: r.get(4)?,
                    candidates: r.get(5)?,
                    validated: r.get(6)?,
                    seconds: r.get(7)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}

/// A stored task; one stored before `difficulty` became SWE-bench Verified's string keeps its
/// features (then held in `difficulty`) as `difficulty_features`.
fn decode(id: &str, json: &str) -> Result<Task, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt {
        id: id.to_owned(),
        reason: e.to_string(),
    };
    let mut value: serde_json::Value = serde_json::from_str(json).map_err(corrupt)?;
    if let Some(obj) = value.as_object_mut()
        && obj
            .get("difficulty")
            .is_some_and(serde_json::Value::is_object)
        && !obj.contains_key("difficulty_features")
    {
        let features = obj.remove("difficulty").unwrap_or_default();
        obj.insert("difficulty_features".into(), features);
    }
    let mut task: Task = serde_json::from_value(value).map_err(corrupt)?;
    if task.difficulty.is_empty()
        && let Some(f) = &task.difficulty_features
    {
        task.difficulty = f.level().to_owned();
    }
    Ok(task)
}

/// The SWE-bench export of a task: its fields with F2P/P2P as JSON strings (as the SWE-bench
/// datasets store them), plus agentao's own. The hidden bug is left out except as
/// `bug_patch`, which harnesses need to rebuild the buggy tree.
pub fn swebench_row(task: &Task) -> serde_json::Value {
    let mut v = serde_json::to_value(task).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        for key in ["FAIL_TO_PASS", "PASS_TO_PASS"] {
            if let Some(list) = obj.get(key) {
                let text = list.to_string();
                obj.insert(key.to_owned(), serde_json::Value::String(text));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str) -> Task {
        serde_json::from_value(serde_json::json!({
            "instance_id": id, "repo": "pypi/demo", "patch": "p", "problem_statement": "s",
            "FAIL_TO_PASS": ["t.py::a"], "PASS_TO_PASS": ["t.py::b"], "package": "demo",
            "pypi_version": "1.0", "created_at": "2026-01-01T00:00:00Z", "mutation_kind": "compare_swap"
        }))
        .unwrap()
    }

    #[test]
    fn a_task_stored_with_difficulty_features_keeps_them() {
        let old = r#"{"instance_id":"d__1","repo":"pypi/d","patch":"p","problem_statement":"s",
            "FAIL_TO_PASS":[],"PASS_TO_PASS":[],"difficulty":{"gold_lines":30,"gold_files":1,
            "fail_to_pass":1,"pass_to_pass":0,"function_lines":5,"source_files":3,
            "test_seconds":0.2,"statement_words":9}}"#;
        let t = decode("d__1", old).unwrap();
        assert_eq!(t.difficulty, "1-4 hours");
        assert_eq!(t.difficulty_features.unwrap().gold_lines, 30);
    }

    #[test]
    fn tasks_round_trip_and_export_like_swe_bench() {
        let dir = tempfile::tempdir().unwrap();
        let store = TaskStore::open(&dir.path().join("t.db")).unwrap();
        store.put(&task("demo__1")).unwrap();
        store.put(&task("demo__2")).unwrap();
        store.put(&task("demo__1")).unwrap();
        assert_eq!(store.list().unwrap().len(), 2);
        assert_eq!(store.get("demo__1").unwrap().unwrap(), task("demo__1"));
        assert!(store.get("nope").unwrap().is_none());
        assert_eq!(store.count_for("demo", "1.0").unwrap(), 2);
        let row = swebench_row(&task("demo__1"));
        assert_eq!(row["FAIL_TO_PASS"], "[\"t.py::a\"]");
        let back: Task = serde_json::from_value(row).unwrap();
        assert_eq!(back, task("demo__1"));
        store
            .log(&ForgeLogEntry {
                at: "now".into(),
                package: "x".into(),
                version: "1".into(),
                status: "skipped".into(),
                reason: "no tests".into(),
                candidates: 0,
                validated: 0,
                seconds: 0.1,
            })
            .unwrap();
        assert_eq!(store.forge_log().unwrap()[0].reason, "no tests");
    }
}

//! The agent's tools, executed inside the task's sandbox: `bash`, `view`, `search`,
//! `str_replace` (refusing edits that break a Python file's syntax) and `submit`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use crate::llm::ToolSpec;
use crate::sandbox::{ExecRequest, ExecStatus, Sandbox, SandboxError};

/// Characters of tool output shown to the model.
pub const OUTPUT_LIMIT: usize = 8_000;

/// The tools offered to tool-calling models.
pub fn specs() -> Vec<ToolSpec> {
    let spec = |name: &str, description: &str, parameters: serde_json::Value| ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        parameters,
    };
    vec![
        spec(
            "bash",
            "Run a shell command in /repo and return its exit code and output.",
            json!({"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}),
        ),
        spec(
            "view",
            "Show a file with line numbers; optionally only lines start_line..end_line.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"}, "start_line": {"type": "integer"}, "end_line": {"type": "integer"}},
                "required": ["path"]}),
        ),
        spec(
            "search",
            "Search the repository (grep -rn) for a regular expression, optionally under a path.",
            json!({"type": "object", "properties": {"pattern": {"type": "string"}, "path": {"type": "string"}},
                "required": ["pattern"]}),
        ),
        spec(
            "str_replace",
            "Replace old_str, which must occur exactly once in the file, with new_str.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"}, "old_str": {"type": "string"}, "new_str": {"type": "string"}},
                "required": ["path", "old_str", "new_str"]}),
        ),
        spec(
            "submit",
            "Finish: the changes in /repo become the patch.",
            json!({"type": "object", "properties": {}}),
        ),
    ]
}

/// What a tool call did.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolOutcome {
    /// Text for the model.
    Output(String),
    /// The call was refused or failed; the message goes back to the model.
    Error(String),
    /// The model submitted.
    Submit,
}

#[derive(Deserialize)]
struct BashArgs {
    command: String,
}
#[derive(Deserialize)]
struct ViewArgs {
    path: String,
    start_line: Option<usize>,
    end_line: Option<usize>,
}
#[derive(Deserialize)]
struct SearchArgs {
    pattern: String,
    path: Option<String>,
}
#[derive(Deserialize)]
struct ReplaceArgs {
    path: String,
    old_str: String,
    new_str: String,
}

/// Runs one tool call. Bad arguments and unknown tools come back as [`ToolOutcome::Error`];
/// only sandbox failures (the container is gone) are errors.
pub async fn run_tool(
    sb: &Sandbox,
    name: &str,
    arguments: &str,
    command_timeout: Duration,
) -> Result<ToolOutcome, SandboxError> {
    let args = if arguments.trim().is_empty() {
        "{}"
    } else {
        arguments
    };
    macro_rules! parse {
        ($t:ty) => {
            match serde_json::from_str::<$t>(args) {
                Ok(a) => a,
                Err(e) => {
                    return Ok(ToolOutcome::Error(format!(
                        "invalid arguments for `{name}`: {e}"
                    )))
                }
            }
        };
    }
    match name {
        "bash" => {
            let a = parse!(BashArgs);
            bash(sb, &a.command, command_timeout).await
        }
        "view" => {
            let a = parse!(ViewArgs);
            view(sb, &a.path, a.start_line, a.end_line).await
        }
        "search" => {
            let a = parse!(SearchArgs);
            let path = a.path.unwrap_or_else(|| ".".to_owned());
            let script = format!(
                "grep -rnI --exclude-dir=.git -e {} {} | head -n 100",
                quote(&a.pattern),
                quote(&path)
            );
            let (text, _) = shell(sb, &script, command_timeout).await?;
            Ok(ToolOutcome::Output(if text.trim().is_empty() {
                "no matches".to_owned()
            } else {
                truncate_middle(&text, OUTPUT_LIMIT)
            }))
        }
        "str_replace" => {
            let a = parse!(ReplaceArgs);
            str_replace(sb, &a.path, &a.old_str, &a.new_str).await
        }
        "submit" => Ok(ToolOutcome::Submit),
        other => Ok(ToolOutcome::Error(format!(
            "unknown tool `{other}`; the tools are bash, view, search, str_replace, submit"
        ))),
    }
}

/// Runs a shell command in /repo; output is the exit code and the (truncated) output.
pub async fn bash(
    sb: &Sandbox,
    command: &str,
    timeout: Duration,
) -> Result<ToolOutcome, SandboxError> {
    let (text, status) = shell(sb, command, timeout).await?;
    Ok(ToolOutcome::Output(format!(
        "{}\n{status}",
        truncate_middle(&text, OUTPUT_LIMIT)
    )))
}

/// Output (stdout then stderr) and a status line of a shell command in /repo.
async fn shell(
    sb: &Sandbox,
    command: &str,
    timeout: Duration,
) -> Result<(String, String), SandboxError> {
    let out = sb
        .exec(
            &ExecRequest::new(["bash", "-c", command])
                .workdir("/repo")
                .timeout(timeout)
                .output_cap(64 << 10),
        )
        .await?;
    let mut text = out.stdout;
    if !out.stderr.is_empty() {
        text.push_str(&out.stderr);
    }
    let status = match out.status {
        ExecStatus::Exited(c) => format!("exit code {c}"),
        ExecStatus::TimedOut => format!("timed out after {}s and was killed", timeout.as_secs()),
        ExecStatus::OutOfMemory => "killed: out of memory".to_owned(),
    };
    Ok((text, status))
}

fn repo_path(path: &str) -> Result<String, String> {
    let p = path.trim();
    if p.is_empty() {
        return Err("empty path".into());
    }
    let full = if p.starts_with('/') {
        p.to_owned()
    } else {
        format!("/repo/{}", p.trim_start_matches("./"))
    };
    if full.split('/').any(|c| c == "..") {
        return Err(format!("path {path:?} may not contain `..`"));
    }
    Ok(full)
}

/// The absolute path and text of a file the model named; the inner error goes to the model.
async fn read_repo_file(
    sb: &Sandbox,
    path: &str,
) -> Result<Result<(String, String), String>, SandboxError> {
    let full = match repo_path(path) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    match sb.read_file(&full, 4 << 20).await {
        Ok(bytes) => Ok(String::from_utf8(bytes)
            .map(|text| (full, text))
            .map_err(|_| format!("{path} is not UTF-8 text"))),
        Err(SandboxError::BadPath(_)) => Ok(Err(format!("{path}: no such file"))),
        Err(SandboxError::TooLarge { .. }) => Ok(Err(format!("{path} is too large to view"))),
        Err(e) => Err(e),
    }
}

async fn view(
    sb: &Sandbox,
    path: &str,
    start: Option<usize>,
    end: Option<usize>,
) -> Result<ToolOutcome, SandboxError> {
    let (_, text) = match read_repo_file(sb, path).await? {
        Ok(found) => found,
        Err(e) => return Ok(ToolOutcome::Error(e)),
    };
    let lines: Vec<&str> = text.lines().collect();
    let first = start.unwrap_or(1).max(1);
    let last = end.unwrap_or(lines.len()).min(lines.len());
    if first > last.max(1) || first > lines.len().max(1) {
        return Ok(ToolOutcome::Error(format!(
            "{path} has {} lines; range {first}..{last} is empty",
            lines.len()
        )));
    }
    let body: String = lines[first - 1..last]
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{:>6}\t{l}\n", first + i))
        .collect();
    Ok(ToolOutcome::Output(truncate_middle(&body, OUTPUT_LIMIT)))
}

async fn str_replace(
    sb: &Sandbox,
    path: &str,
    old: &str,
    new: &str,
) -> Result<ToolOutcome, SandboxError> {
    let (full, text) = match read_repo_file(sb, path).await? {
        Ok(found) => found,
        Err(e) => return Ok(ToolOutcome::Error(e)),
    };
    if old.is_empty() {
        return Ok(ToolOutcome::Error("old_str is empty".into()));
    }
    match text.matches(old).count() {
        0 => {
            return Ok(ToolOutcome::Error(format!(
                "old_str does not occur in {path}"
            )));
        }
        1 => {}
        n => {
            return Ok(ToolOutcome::Error(format!(
                "old_str occurs {n} times in {path}; include more context to make it unique"
            )));
        }
    }
    let edited = text.replacen(old, new, 1);
    if full.ends_with(".py") {
        // The real interpreter decides: write a candidate copy and parse it.
        sb.write_files("/", &[("agentao/edit_check.py", edited.as_bytes(), 0o644)])
            .await?;
        let check = sb
            .exec(
                &ExecRequest::new([
                    "python",
                    "-c",
                    "import ast,sys; ast.parse(open(sys.argv[1]).read(), sys.argv[2])",
                    "/agentao/edit_check.py",
                    path,
                ])
                .timeout(Duration::from_secs(30)),
            )
            .await?;
        if !check.success() {
            let reason = check
                .stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("syntax error")
                .to_owned();
            return Ok(ToolOutcome::Error(format!(
                "edit refused: the file would not parse ({reason}); {path} is unchanged"
            )));
        }
    }
    let rel = full.trim_start_matches('/');
    sb.write_files("/", &[(rel, edited.as_bytes(), 0o644)])
        .await?;
    let line = text[..text.find(old).unwrap_or(0)].matches('\n').count() + 1;
    Ok(ToolOutcome::Output(format!(
        "edited {path} at line {line} ({} lines replaced by {})",
        old.lines().count().max(1),
        new.lines().count().max(1)
    )))
}

/// Keeps the start and the end of a long text.
pub fn truncate_middle(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut head = limit / 2;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - limit / 2;
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}\n[... {} characters cut ...]\n{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_output_keeps_both_ends() {
        let t = format!("{}{}", "a".repeat(10_000), "END");
        let s = truncate_middle(&t, 100);
        assert!(s.starts_with("aaaa") && s.ends_with("END") && s.len() < 200);
        assert_eq!(truncate_middle("short", 100), "short");
    }

    #[test]
    fn paths_stay_readable_and_cannot_climb() {
        assert_eq!(repo_path("pkg/a.py").unwrap(), "/repo/pkg/a.py");
        assert_eq!(repo_path("./a.py").unwrap(), "/repo/a.py");
        assert!(repo_path("../etc/passwd").is_err());
        assert!(repo_path("").is_err());
    }

    #[test]
    fn every_tool_has_an_object_schema() {
        let names: Vec<String> = specs().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["bash", "view", "search", "str_replace", "submit"]);
        assert!(specs().iter().all(|s| s.parameters["type"] == "object"));
    }
}

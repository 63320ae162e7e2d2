//! JSON Lines parsing, shared by every file format agentao reads line by line (tasks,
//! predictions). Blank lines are skipped; errors name the 1-based line. At the bottom of the
//! dependency line: imports nothing of agentao.

use serde::de::DeserializeOwned;

/// A line that is not a valid `T`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// Parses every non-blank line of `text` as a `T`, stopping at the first bad line.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, LineError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| LineError {
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn blank_lines_are_skipped_and_errors_name_their_line() {
        let v: Vec<u32> = super::parse("1\n\n2\n").unwrap();
        assert_eq!(v, [1, 2]);
        let e = super::parse::<u32>("1\n\nx\n").unwrap_err();
        assert_eq!(e.line, 3);
    }
}

//! Copies among agent files: the same sha256, or the same program up to whitespace, comments
//! and names: Python tokens with comments, docstrings, trailing commas and layout dropped and
//! every name that is not a keyword, builtin or attribute replaced by the order of its first
//! appearance, compared as sequences (`similar`'s ratio). A near copy is one at [`NEAR_COPY`]
//! or above.

use std::collections::HashMap;

pub use crate::likeness::similarity;

/// Normalised token similarity at or above which a file is a near copy.
pub const NEAR_COPY: f64 = 0.98;

const KEEP: &[&str] = &[
    "False",
    "None",
    "True",
    "and",
    "as",
    "assert",
    "async",
    "await",
    "break",
    "class",
    "continue",
    "def",
    "del",
    "elif",
    "else",
    "except",
    "finally",
    "for",
    "from",
    "global",
    "if",
    "import",
    "in",
    "is",
    "lambda",
    "nonlocal",
    "not",
    "or",
    "pass",
    "raise",
    "return",
    "try",
    "while",
    "with",
    "yield",
    "agent_main",
    "self",
    "print",
    "len",
    "range",
    "open",
    "str",
    "int",
    "dict",
    "list",
    "set",
    "tuple",
    "isinstance",
    "json",
    "os",
    "sys",
    "subprocess",
    "re",
];

/// The normalised tokens of a Python source (a lexer of its own: names, numbers, strings,
/// operators; comments and layout dropped; strings kept as written).
pub fn normalised_tokens(source: &str) -> Vec<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() || c == '\\' {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' {
            let triple = i + 2 < chars.len() && chars[i + 1] == c && chars[i + 2] == c;
            let start = i;
            i += if triple { 3 } else { 1 };
            while i < chars.len() {
                if chars[i] == '\\' {
                    i += 2;
                    continue;
                }
                if triple {
                    if i + 2 < chars.len()
                        && chars[i] == c
                        && chars[i + 1] == c
                        && chars[i + 2] == c
                    {
                        i += 3;
                        break;
                    }
                } else if chars[i] == c || chars[i] == '\n' {
                    i += 1;
                    break;
                }
                i += 1;
            }
            let end = i.min(chars.len());
            // Triple-quoted strings are docstrings and prose: layout, like comments.
            if !triple {
                out.push(chars[start..end].iter().collect());
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // Attribute names and keyword arguments are the libraries' own
            // (`urllib.request`, `text=True`): kept as written.
            let attribute = out.last().is_some_and(|t: &String| t == ".");
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            let keyword = depth > 0 && chars.get(j) == Some(&'=') && chars.get(j + 1) != Some(&'=');
            if attribute || keyword || KEEP.contains(&word.as_str()) {
                out.push(word);
            } else {
                let next = names.len();
                let n = *names.entry(word).or_insert(next);
                out.push(format!("${n}"));
            }
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else {
            // A trailing comma before a closing bracket is layout (formatters add it).
            if matches!(c, ')' | ']' | '}') && out.last().is_some_and(|t| t == ",") {
                out.pop();
            }
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// For each file in submission order, the index of the earlier file it copies (same sha256 or
/// near copy), if any. The earliest of a family is never a copy.
pub fn copies_of(files: &[&[u8]]) -> Vec<Option<usize>> {
    let hashes: Vec<String> = files.iter().map(|f| super::agent_hash(f)).collect();
    let tokens: Vec<Vec<String>> = files
        .iter()
        .map(|f| normalised_tokens(&String::from_utf8_lossy(f)))
        .collect();
    (0..files.len())
        .map(|i| {
            (0..i).find(|&j| {
                hashes[i] == hashes[j] || similarity(&tokens[i], &tokens[j]) >= NEAR_COPY
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "import json\n\ndef agent_main(input):\n    # ask\n    text = input['problem_statement']\n    return helper(text)\n\ndef helper(t):\n    return t.upper()\n";
    const RENAMED: &str = "import json\ndef agent_main( input ):\n  statement=input['problem_statement']   # renamed\n  return shout(statement)\n\n\ndef shout(x):\n  return x.upper()\n";
    const OTHER: &str = "import subprocess\n\ndef agent_main(input):\n    out = subprocess.run(['git', 'diff'], capture_output=True, text=True)\n    if out.returncode:\n        return ''\n    return out.stdout\n";

    #[test]
    fn renames_and_layout_do_not_hide_a_copy_but_another_program_is_not_one() {
        let a = normalised_tokens(A);
        assert_eq!(similarity(&a, &normalised_tokens(RENAMED)), 1.0);
        assert!(similarity(&a, &normalised_tokens(OTHER)) < 0.9);
        let found = copies_of(&[
            A.as_bytes(),
            OTHER.as_bytes(),
            RENAMED.as_bytes(),
            A.as_bytes(),
        ]);
        assert_eq!(found, vec![None, None, Some(0), Some(0)]);
    }

    #[test]
    fn the_acceptance_fixtures_copy_and_do_not_copy() {
        let solver = include_str!("../../../tests/fixtures/agents/solver.py");
        let copy = include_str!("../../../tests/fixtures/agents/copy.py");
        let hostile = include_str!("../../../tests/fixtures/agents/hostile.py");
        let s = normalised_tokens(solver);
        let near = similarity(&s, &normalised_tokens(copy));
        assert!(near >= NEAR_COPY, "{near}");
        assert!(similarity(&s, &normalised_tokens(hostile)) < 0.5);
    }
}

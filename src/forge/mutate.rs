//! Procedural bugs: Python source parsed with tree-sitter, one small edit inside one function
//! (an operator swapped, a constant off by one, a condition inverted, arguments swapped, a
//! statement or return value dropped). Edits are byte ranges, so the rest of the file keeps
//! its formatting and the gold patch is simply the reverse diff.

use std::fmt;

use serde::{Deserialize, Serialize};
use tree_sitter::{Node, Parser};

/// The kinds of bug the forge makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationKind {
    CompareSwap,
    ArithmeticSwap,
    BooleanSwap,
    NegationRemoved,
    OffByOne,
    ConditionInverted,
    ArgumentsSwapped,
    StatementDropped,
    ReturnValueDropped,
}

impl MutationKind {
    pub const ALL: [MutationKind; 9] = [
        MutationKind::CompareSwap,
        MutationKind::ArithmeticSwap,
        MutationKind::BooleanSwap,
        MutationKind::NegationRemoved,
        MutationKind::OffByOne,
        MutationKind::ConditionInverted,
        MutationKind::ArgumentsSwapped,
        MutationKind::StatementDropped,
        MutationKind::ReturnValueDropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MutationKind::CompareSwap => "compare_swap",
            MutationKind::ArithmeticSwap => "arithmetic_swap",
            MutationKind::BooleanSwap => "boolean_swap",
            MutationKind::NegationRemoved => "negation_removed",
            MutationKind::OffByOne => "off_by_one",
            MutationKind::ConditionInverted => "condition_inverted",
            MutationKind::ArgumentsSwapped => "arguments_swapped",
            MutationKind::StatementDropped => "statement_dropped",
            MutationKind::ReturnValueDropped => "return_value_dropped",
        }
    }
}

impl fmt::Display for MutationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One candidate bug: replace `source[start..end]` of `file` with `replacement`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// Path relative to the repository root.
    pub file: String,
    /// Qualified name of the enclosing function (`Class.method`).
    pub function: String,
    /// First and last line (1-based) of the function.
    pub function_lines: (u32, u32),
    /// Lines (1-based, inclusive) the edit touches.
    pub lines: (u32, u32),
    pub kind: MutationKind,
    pub start: usize,
    pub end: usize,
    pub replacement: String,
}

impl Mutation {
    /// The file's text with the bug in.
    pub fn apply(&self, source: &str) -> String {
        let mut out = String::with_capacity(source.len() + self.replacement.len());
        out.push_str(&source[..self.start]);
        out.push_str(&self.replacement);
        out.push_str(&source[self.end..]);
        out
    }
}

/// Errors parsing a file.
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    #[error("{0}: does not parse as Python")]
    Syntax(String),
    #[error("tree-sitter: {0}")]
    Parser(String),
}

pub(super) fn parser() -> Result<Parser, MutateError> {
    let mut p = Parser::new();
    p.set_language(&tree_sitter_python::LANGUAGE.into())
        .map_err(|e| MutateError::Parser(e.to_string()))?;
    Ok(p)
}

/// Whether `source` parses as Python without errors.
pub fn parses(source: &str) -> bool {
    parser()
        .ok()
        .and_then(|mut p| p.parse(source, None))
        .is_some_and(|t| !t.root_node().has_error())
}

/// Every candidate bug in the functions of one file.
pub fn candidates(file: &str, source: &str) -> Result<Vec<Mutation>, MutateError> {
    let tree = parser()?
        .parse(source, None)
        .ok_or_else(|| MutateError::Syntax(file.to_owned()))?;
    let root = tree.root_node();
    if root.has_error() {
        return Err(MutateError::Syntax(file.to_owned()));
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        if node.kind() == "function_definition"
            && let Some(body) = node.child_by_field_name("body")
        {
            let ctx = FunctionCtx {
                file,
                source,
                name: qualified_name(node, source),
                lines: (
                    line(node.start_position().row),
                    line(node.end_position().row),
                ),
            };
            ctx.walk(body, &mut out);
        }
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            // Nested functions are walked as functions of their own.
            stack.push(child);
        }
    }
    out.sort_by_key(|m| (m.start, m.end, m.kind));
    out.dedup_by(|a, b| a.start == b.start && a.end == b.end && a.replacement == b.replacement);
    Ok(out)
}

fn line(row: usize) -> u32 {
    row as u32 + 1
}

pub(super) fn qualified_name(func: Node<'_>, source: &str) -> String {
    let mut parts = Vec::new();
    let mut node = Some(func);
    while let Some(n) = node {
        if matches!(n.kind(), "function_definition" | "class_definition")
            && let Some(name) = n.child_by_field_name("name")
        {
            parts.push(&source[name.byte_range()]);
        }
        node = n.parent();
    }
    parts.reverse();
    parts.join(".")
}

struct FunctionCtx<'a> {
    file: &'a str,
    source: &'a str,
    name: String,
    lines: (u32, u32),
}

impl FunctionCtx<'_> {
    fn text(&self, n: Node<'_>) -> &str {
        &self.source[n.byte_range()]
    }

    fn push(
        &self,
        out: &mut Vec<Mutation>,
        kind: MutationKind,
        start: usize,
        end: usize,
        rep: String,
    ) {
        let first = self.source[..start].matches('\n').count();
        let last = first + self.source[start..end].matches('\n').count();
        out.push(Mutation {
            file: self.file.to_owned(),
            function: self.name.clone(),
            function_lines: self.lines,
            lines: (line(first), line(last)),
            kind,
            start,
            end,
            replacement: rep,
        });
    }

    /// Replaces the whole of `node`.
    fn replace(
        &self,
        out: &mut Vec<Mutation>,
        kind: MutationKind,
        node: Node<'_>,
        rep: impl Into<String>,
    ) {
        self.push(out, kind, node.start_byte(), node.end_byte(), rep.into());
    }

    fn walk(&self, node: Node<'_>, out: &mut Vec<Mutation>) {
        match node.kind() {
            // Nested definitions belong to their own function.
            "function_definition" | "class_definition" | "lambda" => return,
            // Strings, docstrings and f-strings are not code to mutate.
            "string" | "concatenated_string" => return,
            "comparison_operator" => self.comparison(node, out),
            "binary_operator" => self.binary(node, out),
            "boolean_operator" => self.boolean(node, out),
            "not_operator" => {
                if let Some(arg) = node.child_by_field_name("argument") {
                    let rep = self.text(arg).to_owned();
                    self.replace(out, MutationKind::NegationRemoved, node, rep);
                }
            }
            "integer" => self.integer(node, out),
            "if_statement" | "elif_clause" | "while_statement" => {
                if let Some(cond) = node.child_by_field_name("condition") {
                    let rep = format!("not ({})", self.text(cond));
                    self.replace(out, MutationKind::ConditionInverted, cond, rep);
                }
            }
            "call" => self.call(node, out),
            "expression_statement" => self.drop_statement(node, out),
            "return_statement" => {
                if let Some(value) = node.named_child(0) {
                    let keep = &self.source[node.start_byte()..value.start_byte()];
                    let rep = keep.trim_end().to_owned();
                    if self.text(value) != "None" {
                        self.replace(out, MutationKind::ReturnValueDropped, node, rep);
                    }
                }
            }
            "augmented_assignment" => {
                if let Some(op) = node.child_by_field_name("operator") {
                    let rep = match self.text(op) {
                        "+=" => Some("-="),
                        "-=" => Some("+="),
                        "*=" => Some("//="),
                        "|=" => Some("&="),
                        "&=" => Some("|="),
                        _ => None,
                    };
                    if let Some(rep) = rep {
                        self.replace(out, MutationKind::ArithmeticSwap, op, rep.to_owned());
                    }
                }
            }
            _ => {}
        }
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            self.walk(child, out);
        }
    }

    fn comparison(&self, node: Node<'_>, out: &mut Vec<Mutation>) {
        // Operators are the unnamed children; `not in` and `is not` are two tokens.
        let mut cursor = node.walk();
        let kids: Vec<Node<'_>> = node.children(&mut cursor).collect();
        let mut i = 0;
        while i < kids.len() {
            let k = kids[i];
            if k.is_named() {
                i += 1;
                continue;
            }
            let t = self.text(k);
            let next = kids
                .get(i + 1)
                .filter(|n| !n.is_named())
                .map(|n| self.text(*n));
            let (end, rep) = match (t, next) {
                ("not", Some("in")) => (kids[i + 1].end_byte(), "in"),
                ("is", Some("not")) => (kids[i + 1].end_byte(), "is"),
                ("in", _) => (k.end_byte(), "not in"),
                ("is", _) => (k.end_byte(), "is not"),
                ("<", _) => (k.end_byte(), "<="),
                ("<=", _) => (k.end_byte(), "<"),
                (">", _) => (k.end_byte(), ">="),
                (">=", _) => (k.end_byte(), ">"),
                ("==", _) => (k.end_byte(), "!="),
                ("!=", _) => (k.end_byte(), "=="),
                ("not in", _) => (k.end_byte(), "in"),
                ("is not", _) => (k.end_byte(), "is"),
                _ => {
                    i += 1;
                    continue;
                }
            };
            self.push(
                out,
                MutationKind::CompareSwap,
                k.start_byte(),
                end,
                rep.to_owned(),
            );
            i += if end == k.end_byte() { 1 } else { 2 };
        }
    }

    fn binary(&self, node: Node<'_>, out: &mut Vec<Mutation>) {
        let (Some(l), Some(op), Some(r)) = (
            node.child_by_field_name("left"),
            node.child_by_field_name("operator"),
            node.child_by_field_name("right"),
        ) else {
            return;
        };
        // String building and formatting (`"a" + b`, `"%s" % x`) makes type errors, not bugs.
        if [l, r]
            .iter()
            .any(|n| matches!(n.kind(), "string" | "concatenated_string"))
        {
            return;
        }
        let rep = match self.text(op) {
            "+" => "-",
            "-" => "+",
            "*" => "+",
            "/" => "*",
            "//" => "/",
            "<<" => ">>",
            ">>" => "<<",
            "&" => "|",
            "|" => "&",
            _ => return,
        };
        self.replace(out, MutationKind::ArithmeticSwap, op, rep.to_owned());
    }

    fn boolean(&self, node: Node<'_>, out: &mut Vec<Mutation>) {
        if let Some(op) = node.child_by_field_name("operator") {
            let rep = match self.text(op) {
                "and" => "or",
                "or" => "and",
                _ => return,
            };
            self.replace(out, MutationKind::BooleanSwap, op, rep.to_owned());
        }
    }

    fn integer(&self, node: Node<'_>, out: &mut Vec<Mutation>) {
        let Some(parent) = node.parent() else { return };
        // Constants that bound something: comparisons, slices, subscripts, arithmetic, ranges.
        let bounding = match parent.kind() {
            "comparison_operator" | "slice" | "binary_operator" => true,
            "subscript" => true,
            "argument_list" => parent
                .parent()
                .and_then(|c| c.child_by_field_name("function"))
                .is_some_and(|f| self.text(f) == "range"),
            _ => false,
        };
        if !bounding {
            return;
        }
        let Ok(n) = self.text(node).parse::<i64>() else {
            return;
        };
        let rep = if n == 0 { 1 } else { n + 1 };
        self.replace(out, MutationKind::OffByOne, node, rep.to_string());
        if n > 1 {
            self.replace(out, MutationKind::OffByOne, node, (n - 1).to_string());
        }
    }

    fn call(&self, node: Node<'_>, out: &mut Vec<Mutation>) {
        let Some(args) = node.child_by_field_name("arguments") else {
            return;
        };
        if args.kind() != "argument_list" {
            return;
        }
        let mut cursor = args.walk();
        let named: Vec<Node<'_>> = args.named_children(&mut cursor).collect();
        if named.len() < 2
            || named.iter().any(|a| {
                matches!(
                    a.kind(),
                    "keyword_argument"
                        | "list_splat"
                        | "dictionary_splat"
                        | "comment"
                        | "parenthesized_list_splat"
                )
            })
        {
            return;
        }
        let (a, b) = (named[0], named[1]);
        if self.text(a) == self.text(b) {
            return;
        }
        let between = &self.source[a.end_byte()..b.start_byte()];
        let rep = format!("{}{}{}", self.text(b), between, self.text(a));
        self.push(
            out,
            MutationKind::ArgumentsSwapped,
            a.start_byte(),
            b.end_byte(),
            rep,
        );
    }

    fn drop_statement(&self, node: Node<'_>, out: &mut Vec<Mutation>) {
        let Some(parent) = node.parent() else { return };
        if parent.kind() != "block" || parent.named_child_count() < 2 {
            return;
        }
        let Some(inner) = node.named_child(0) else {
            return;
        };
        if matches!(inner.kind(), "string" | "ellipsis" | "concatenated_string") {
            return;
        }
        // Only whole lines: nothing else may share them.
        let start = self.source[..node.start_byte()]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        if !self.source[start..node.start_byte()].trim().is_empty() {
            return;
        }
        let end = self.source[node.end_byte()..]
            .find('\n')
            .map_or(self.source.len(), |i| node.end_byte() + i + 1);
        let rest = self.source[node.end_byte()..end].trim();
        if !rest.is_empty() && !rest.starts_with('#') {
            return;
        }
        self.push(
            out,
            MutationKind::StatementDropped,
            start,
            end,
            String::new(),
        );
    }
}

/// A unified diff (git style) turning `old` into `new` at `path`.
pub fn unified_diff(path: &str, old: &str, new: &str) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let body = diff
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string();
    if body.is_empty() {
        return body;
    }
    format!("diff --git a/{path} b/{path}\n{body}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = r#"import os


class Box:
    """A box."""

    def fits(self, size, limit=10):
        """Whether it fits."""
        if size <= limit and not self.closed:
            total = size + 1
            self.log(size, limit)
            return total < limit
        return None


def first(items):
    return items[0:2]
"#;

    #[test]
    fn every_kind_of_edit_is_found_and_keeps_the_file_parsing() {
        let muts = candidates("pkg/box.py", SRC).unwrap();
        let kinds: std::collections::BTreeSet<_> = muts.iter().map(|m| m.kind).collect();
        for k in MutationKind::ALL {
            assert!(kinds.contains(&k), "{k} not generated");
        }
        for m in &muts {
            let new = m.apply(SRC);
            assert_ne!(new, SRC);
            assert!(parses(&new), "{m:?} breaks the syntax:\n{new}");
            assert!(
                m.function == "Box.fits" || m.function == "first",
                "{}",
                m.function
            );
        }
        // Docstrings are never touched, nor the module-level import.
        assert!(muts.iter().all(|m| !SRC[m.start..m.end].contains("\"\"\"")));
        assert!(muts.iter().all(|m| m.lines.0 >= 7));
    }

    #[test]
    fn edits_are_byte_exact_and_the_reverse_diff_restores_the_file() {
        let muts = candidates("pkg/box.py", SRC).unwrap();
        let swap = muts
            .iter()
            .find(|m| m.kind == MutationKind::ArgumentsSwapped)
            .unwrap();
        let new = swap.apply(SRC);
        assert!(new.contains("self.log(limit, size)"));
        assert_eq!(new.lines().count(), SRC.lines().count());
        let bug = unified_diff("pkg/box.py", SRC, &new);
        let gold = unified_diff("pkg/box.py", &new, SRC);
        assert!(bug.starts_with("diff --git a/pkg/box.py b/pkg/box.py\n--- a/pkg/box.py\n"));
        assert!(
            gold.contains(
                "-            self.log(limit, size)\n+            self.log(size, limit)\n"
            )
        );
        let dropped = muts
            .iter()
            .find(|m| m.kind == MutationKind::StatementDropped)
            .unwrap();
        assert_eq!(dropped.apply(SRC).lines().count(), SRC.lines().count() - 1);
    }

    #[test]
    fn broken_files_are_reported() {
        assert!(matches!(
            candidates("x.py", "def f(:\n  pass\n"),
            Err(MutateError::Syntax(_))
        ));
    }
}

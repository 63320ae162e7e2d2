//! Decoy fixes: the obvious wrong fixes of a candidate bug, written on the buggy file. A task
//! whose tests accept one of them cannot tell a fix from a hack (deleting the check the bug
//! broke passes as well as restoring it), so the forge rejects it.
//!
//! The decoys, each a whole file: the statement holding the bug deleted, the block around it
//! deleted, an early return at the top of the function, the other operators or constants at
//! the bug's spot, the condition there made constant, and each `raise`/`assert` of the
//! function (the failing test's code path) removed. A decoy identical to the clean or the
//! buggy file, or one that does not parse, is not tried.

use tree_sitter::Node;

use super::mutate::{Mutation, MutationKind, parser, parses};

/// Most decoys tried per candidate.
pub const MAX_DECOYS: usize = 10;

/// One wrong fix: a name for the log and the whole file with it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoy {
    pub name: String,
    pub text: String,
}

const COMPARE: &[&str] = &["<", "<=", ">", ">=", "==", "!="];
const ARITH: &[&str] = &["+", "-", "*", "/", "//", "%"];
const AUGMENTED: &[&str] = &["+=", "-=", "*=", "//="];

/// The decoys of `m`, given the clean file and the buggy one (`m.apply(original)`).
pub fn decoys(m: &Mutation, original: &str, buggy: &str) -> Vec<Decoy> {
    let Ok(mut p) = parser() else {
        return Vec::new();
    };
    let Some(tree) = p.parse(buggy, None) else {
        return Vec::new();
    };
    let (start, end) = (m.start, m.start + m.replacement.len());
    let root = tree.root_node();
    let mut out: Vec<Decoy> = Vec::new();
    let mut push = |name: String, text: String| {
        if text != original && text != buggy && out.iter().all(|d| d.text != text) {
            out.push(Decoy { name, text });
        }
    };
    let Some(at) = root.descendant_for_byte_range(start, end.max(start)) else {
        return Vec::new();
    };
    let function = ancestor(at, |n| n.kind() == "function_definition");

    // The statement holding the bug, and the block around it.
    if let Some(stmt) = ancestor(at, is_statement) {
        if m.kind != MutationKind::StatementDropped {
            push("delete_statement".into(), delete(buggy, stmt));
        }
        let compound = if is_compound(stmt) {
            Some(stmt)
        } else {
            stmt.parent().and_then(|b| ancestor(b, is_compound))
        };
        if let Some(block) = compound.filter(|c| within(*c, function)) {
            push("delete_block".into(), delete(buggy, block));
        }
    }
    // Return at the top of the function: nothing, or its first argument back.
    if let Some(f) = function
        && let Some(body) = f.child_by_field_name("body")
    {
        let mut cursor = body.walk();
        let stmts: Vec<Node<'_>> = body.named_children(&mut cursor).collect();
        let first = stmts
            .iter()
            .find(|s| !is_docstring(**s))
            .or(stmts.first())
            .copied();
        if let Some(first) = first {
            let indent = indent_of(buggy, first.start_byte());
            let line_start = line_start(buggy, first.start_byte());
            let mut returns = vec![("early_return", "return".to_owned())];
            if let Some(arg) = first_argument(f, buggy) {
                returns.push(("return_argument", format!("return {arg}")));
            }
            for (name, line) in returns {
                let mut text = buggy[..line_start].to_owned();
                text.push_str(&format!("{indent}{line}\n"));
                text.push_str(&buggy[line_start..]);
                push(name.into(), text);
            }
        }
    }
    // The other operators or constants at the bug's spot.
    let spot = &buggy[start..end];
    let was = &original[m.start..m.end];
    let variants: Vec<String> = match m.kind {
        MutationKind::CompareSwap if COMPARE.contains(&spot) => strs(COMPARE),
        MutationKind::ArithmeticSwap if ARITH.contains(&spot) => strs(ARITH),
        MutationKind::ArithmeticSwap if AUGMENTED.contains(&spot) => strs(AUGMENTED),
        MutationKind::OffByOne => match was.parse::<i64>() {
            Ok(n) => [n - 1, n + 1]
                .iter()
                .filter(|v| **v >= 0)
                .map(i64::to_string)
                .collect(),
            Err(_) => Vec::new(),
        },
        _ => Vec::new(),
    };
    for v in variants.iter().filter(|v| *v != spot && *v != was) {
        let text = format!("{}{v}{}", &buggy[..start], &buggy[end..]);
        push(format!("operator:{v}"), text);
    }
    // The condition at the spot made constant (an `if` or `elif` only: a constant `while`
    // loops forever).
    if let Some(cond_owner) = ancestor(at, |n| matches!(n.kind(), "if_statement" | "elif_clause"))
        .filter(|c| within(*c, function))
        && let Some(cond) = cond_owner.child_by_field_name("condition")
        && cond.start_byte() <= start
        && end <= cond.end_byte()
    {
        for v in ["True", "False"] {
            let text = format!(
                "{}{v}{}",
                &buggy[..cond.start_byte()],
                &buggy[cond.end_byte()..]
            );
            push(format!("condition:{v}"), text);
        }
    }
    // The failing test's code path: each raise or assert of the function removed.
    if let Some(f) = function {
        let mut stack = vec![f];
        let mut found = Vec::new();
        while let Some(n) = stack.pop() {
            if matches!(n.kind(), "raise_statement" | "assert_statement") {
                found.push(n);
                continue;
            }
            let mut cursor = n.walk();
            for c in n.children(&mut cursor) {
                if n == f || !matches!(c.kind(), "function_definition" | "class_definition") {
                    stack.push(c);
                }
            }
        }
        found.sort_by_key(|n| n.start_byte());
        for (i, n) in found.into_iter().take(3).enumerate() {
            push(format!("remove_raise:{}", i + 1), delete(buggy, n));
        }
    }
    out.retain(|d| parses(&d.text));
    out.truncate(MAX_DECOYS);
    out
}

fn strs(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn ancestor<'t>(node: Node<'t>, pred: impl Fn(Node<'t>) -> bool) -> Option<Node<'t>> {
    let mut n = Some(node);
    while let Some(x) = n {
        if pred(x) {
            return Some(x);
        }
        n = x.parent();
    }
    None
}

/// Whether `node` lies inside `function` (and is not the function itself).
fn within(node: Node<'_>, function: Option<Node<'_>>) -> bool {
    function.is_some_and(|f| {
        node != f && f.start_byte() <= node.start_byte() && node.end_byte() <= f.end_byte()
    })
}

fn is_statement(n: Node<'_>) -> bool {
    n.parent().is_some_and(|p| p.kind() == "block") && n.is_named() && n.kind() != "comment"
}

fn is_compound(n: Node<'_>) -> bool {
    matches!(
        n.kind(),
        "if_statement" | "for_statement" | "while_statement" | "with_statement" | "try_statement"
    )
}

fn is_docstring(n: Node<'_>) -> bool {
    n.kind() == "expression_statement" && n.named_child(0).is_some_and(|c| c.kind() == "string")
}

fn line_start(text: &str, at: usize) -> usize {
    text[..at].rfind('\n').map_or(0, |i| i + 1)
}

fn indent_of(text: &str, at: usize) -> String {
    text[line_start(text, at)..at]
        .chars()
        .take_while(|c| c.is_whitespace())
        .collect()
}

/// The first parameter that is not `self` or `cls`, when it is a plain name.
fn first_argument(f: Node<'_>, text: &str) -> Option<String> {
    let params = f.child_by_field_name("parameters")?;
    let mut cursor = params.walk();
    let first = params
        .named_children(&mut cursor)
        .map(|p| match p.kind() {
            "identifier" => Some(&text[p.byte_range()]),
            "typed_parameter" | "default_parameter" | "typed_default_parameter" => p
                .child_by_field_name("name")
                .or_else(|| p.named_child(0))
                .filter(|n| n.kind() == "identifier")
                .map(|n| &text[n.byte_range()]),
            _ => None,
        })
        .find(|n| !matches!(n, Some("self" | "cls")))??;
    Some(first.to_owned())
}

/// The file without the lines of `node` (`pass` in their place when it is alone in its
/// block). A node sharing a line with other code is left as it is.
fn delete(text: &str, node: Node<'_>) -> String {
    let start = line_start(text, node.start_byte());
    if !text[start..node.start_byte()].trim().is_empty() {
        return text.to_owned();
    }
    let end = text[node.end_byte()..]
        .find('\n')
        .map_or(text.len(), |i| node.end_byte() + i + 1);
    if !text[node.end_byte()..end].trim().is_empty()
        && !text[node.end_byte()..end].trim().starts_with('#')
    {
        return text.to_owned();
    }
    let alone = node.parent().is_some_and(|b| {
        b.named_children(&mut b.walk())
            .filter(|c| c.kind() != "comment")
            .count()
            == 1
    });
    let mut out = text[..start].to_owned();
    if alone {
        out.push_str(&indent_of(text, node.start_byte()));
        out.push_str("pass\n");
    }
    out.push_str(&text[end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::super::mutate::candidates;
    use super::*;

    const CODEC: &str = "class Codec:\n    def encode(self, data, errors=\"strict\"):\n        if errors != \"strict\":\n            raise ValueError(errors)\n\n        if not data:\n            return b\"\", 0\n\n        return data.encode(), len(data)\n";

    #[test]
    fn the_check_deleting_fix_is_a_decoy_of_the_flipped_check() {
        let m = candidates("codec.py", CODEC)
            .unwrap()
            .into_iter()
            .find(|m| m.kind == MutationKind::CompareSwap && m.replacement == "==")
            .unwrap();
        let buggy = m.apply(CODEC);
        let ds = decoys(&m, CODEC, &buggy);
        let names: Vec<&str> = ds.iter().map(|d| d.name.as_str()).collect();
        let block = ds.iter().find(|d| d.name == "delete_statement").unwrap();
        assert!(
            !block.text.contains("errors ==") && !block.text.contains("raise"),
            "{}",
            block.text
        );
        assert!(block.text.contains("if not data:"));
        for want in [
            "early_return",
            "return_argument",
            "operator:<",
            "operator:>=",
            "condition:False",
            "remove_raise:1",
        ] {
            assert!(names.contains(&want), "{want} missing from {names:?}");
        }
        assert!(!names.contains(&"operator:!=") && !names.contains(&"operator:=="));
        let early = ds.iter().find(|d| d.name == "return_argument").unwrap();
        assert!(
            early
                .text
                .contains("\"strict\"):\n        return data\n        if errors"),
            "{}",
            early.text
        );
        let raise = ds.iter().find(|d| d.name == "remove_raise:1").unwrap();
        assert!(
            raise
                .text
                .contains("if errors == \"strict\":\n            pass\n"),
            "{}",
            raise.text
        );
        assert!(
            ds.iter()
                .all(|d| parses(&d.text) && d.text != CODEC && d.text != buggy)
        );
        assert!(ds.len() <= MAX_DECOYS);
    }

    #[test]
    fn constants_get_their_neighbours() {
        let src = "def head(xs):\n    return xs[:3]\n";
        let m = candidates("h.py", src)
            .unwrap()
            .into_iter()
            .find(|m| m.kind == MutationKind::OffByOne && m.replacement == "4")
            .unwrap();
        let ds = decoys(&m, src, &m.apply(src));
        let names: Vec<&str> = ds.iter().map(|d| d.name.as_str()).collect();
        assert!(names.contains(&"operator:2"), "{names:?}");
        assert!(!names.contains(&"operator:3") && !names.contains(&"operator:4"));
        let deleted = ds.iter().find(|d| d.name == "delete_statement").unwrap();
        assert_eq!(deleted.text, "def head(xs):\n    pass\n");
    }
}

//! How a patch's text is read by what is not the test harness: the LLM judge and the copy
//! check. Both read a submitted unified diff through one lexer of Python's comments and string
//! literals (prefixes, the four quote kinds, escapes), run over each hunk's new side.
//!
//! - [`for_review`]: the patch as the judge sees it. Text a patch could address a reviewer
//!   through is taken out of what it adds: comments are removed, docstrings and other strings
//!   standing alone as statements are removed, other string literals the patch adds are shown
//!   as `"…"` unless they are short (at most [`SHORT_STRING`] characters, one line, e.g. a
//!   separator or a key). Added lines of files that are not Python are withheld (`+…`). Nothing
//!   outside file headers and hunks is kept (no preamble, no text after a hunk header's `@@`).
//!   Context and removed lines are the task's own code and stay as they are.
//! - [`fingerprint`] and [`similarity`]: the change as a token sequence with whitespace,
//!   comments and docstrings gone and the names the patch brings in (on no removed or context
//!   line) renamed by first appearance, so a copy with other local names or layout compares
//!   equal; `similarity` is `similar`'s ratio (2·matches / total tokens) of two sequences.
//!
//! Known limit: a hunk is lexed from its own first line, so a hunk that starts inside a
//! multi-line string of the file is read as code until that string's closing quotes.

use std::collections::{BTreeSet, HashMap};

/// Added string literals this short (characters between the quotes, one line) stay visible.
pub const SHORT_STRING: usize = 8;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Code,
    Comment,
    /// Part of the string literal with this index.
    Str(usize),
}

/// A string literal: byte range (prefix and quotes included), content length, whether it
/// stands alone as a statement.
#[derive(Debug, Clone)]
struct StrTok {
    start: usize,
    end: usize,
    quote_len: usize,
    prefix_len: usize,
    statement: bool,
}

/// Classifies every byte of `src` as code, comment or string.
fn lex(src: &str) -> (Vec<Class>, Vec<StrTok>) {
    let b = src.as_bytes();
    let mut class = vec![Class::Code; b.len()];
    let mut strings = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                let end = src[i..].find('\n').map_or(b.len(), |n| i + n);
                class[i..end].fill(Class::Comment);
                i = end;
            }
            q @ (b'\'' | b'"') => {
                let triple = b.len() >= i + 3 && b[i + 1] == q && b[i + 2] == q;
                let quote_len = if triple { 3 } else { 1 };
                // Prefix letters (r, b, u, f and pairs) right before the quote.
                let mut p = i;
                while p > 0 && i - p < 2 && b"rRbBuUfF".contains(&b[p - 1]) {
                    p -= 1;
                }
                if p > 0 && (b[p - 1].is_ascii_alphanumeric() || b[p - 1] == b'_') {
                    p = i;
                }
                let raw = src[p..i].to_ascii_lowercase().contains('r');
                let mut j = i + quote_len;
                let end = loop {
                    if j >= b.len() {
                        break b.len();
                    }
                    if b[j] == b'\\' && (!raw || j + 1 < b.len()) {
                        j += 2;
                        continue;
                    }
                    if !triple && b[j] == b'\n' {
                        break j;
                    }
                    if b[j] == q && (!triple || (j + 2 < b.len() && b[j + 1] == q && b[j + 2] == q))
                    {
                        break j + quote_len;
                    }
                    j += 1;
                };
                let end = end.min(b.len());
                let line_start = src[..p].rfind('\n').map_or(0, |n| n + 1);
                let line_end = src[end..].find('\n').map_or(b.len(), |n| end + n);
                let after = src[end..line_end].trim_start();
                let statement = src[line_start..p].trim().is_empty()
                    && (after.is_empty() || after.starts_with('#'));
                class[p..end].fill(Class::Str(strings.len()));
                strings.push(StrTok {
                    start: p,
                    end,
                    quote_len,
                    prefix_len: i - p,
                    statement,
                });
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    (class, strings)
}

#[derive(Debug)]
struct Hunk {
    /// (' ', '+' or '-', text without the marker).
    lines: Vec<(char, String)>,
}

#[derive(Debug)]
struct FileDiff {
    /// `diff --git`, `---` and `+++` lines.
    headers: Vec<String>,
    path: String,
    hunks: Vec<Hunk>,
}

impl FileDiff {
    fn is_python(&self) -> bool {
        self.path.ends_with(".py") || self.path.ends_with(".pyi")
    }
}

/// Files and hunks of a unified diff; anything else is dropped.
fn parse(patch: &str) -> Vec<FileDiff> {
    let mut files: Vec<FileDiff> = Vec::new();
    let mut in_hunk = false;
    for line in patch.lines() {
        if line.starts_with("diff --git ") {
            files.push(FileDiff {
                headers: vec![line.to_owned()],
                path: String::new(),
                hunks: Vec::new(),
            });
            in_hunk = false;
            continue;
        }
        if line.starts_with("@@ ") {
            if files.is_empty() {
                continue;
            }
            files
                .last_mut()
                .unwrap()
                .hunks
                .push(Hunk { lines: Vec::new() });
            in_hunk = true;
            continue;
        }
        let header = line.starts_with("--- ") || line.starts_with("+++ ");
        if header && (!in_hunk || files.last().is_some_and(|f| f.hunks.is_empty())) {
            if line.starts_with("--- ") && files.last().is_none_or(|f| !f.hunks.is_empty()) {
                // A diff without `diff --git` lines.
                files.push(FileDiff {
                    headers: Vec::new(),
                    path: String::new(),
                    hunks: Vec::new(),
                });
            }
            let f = files.last_mut().unwrap();
            let side = line[4..].split('\t').next().unwrap_or("").trim();
            if side != "/dev/null" {
                let p = side
                    .strip_prefix("a/")
                    .or_else(|| side.strip_prefix("b/"))
                    .unwrap_or(side);
                f.path = p.to_owned();
            }
            f.headers.push(line.to_owned());
            in_hunk = false;
            continue;
        }
        if !in_hunk {
            continue;
        }
        let Some(h) = files.last_mut().and_then(|f| f.hunks.last_mut()) else {
            continue;
        };
        match line.chars().next() {
            Some(c @ (' ' | '+' | '-')) => h.lines.push((c, line[1..].to_owned())),
            None => h.lines.push((' ', String::new())),
            _ => {}
        }
    }
    files
}

/// One side of a hunk ('+' for the new side, '-' for the old), lexed: per line of the hunk on
/// that side, its byte range in the joined text.
struct Side {
    text: String,
    ranges: HashMap<usize, (usize, usize)>,
    class: Vec<Class>,
    strings: Vec<StrTok>,
}

fn side(h: &Hunk, which: char) -> Side {
    let mut text = String::new();
    let mut ranges = HashMap::new();
    for (i, (k, l)) in h.lines.iter().enumerate() {
        if *k == ' ' || *k == which {
            let start = text.len();
            text.push_str(l);
            ranges.insert(i, (start, text.len()));
            text.push('\n');
        }
    }
    let (class, strings) = lex(&text);
    Side {
        text,
        ranges,
        class,
        strings,
    }
}

/// Whether the byte range lies on lines of kind `k` only.
fn only_on(h: &Hunk, s: &Side, range: (usize, usize), k: char) -> bool {
    h.lines.iter().enumerate().all(|(i, (kind, _))| {
        let Some(&(a, b)) = s.ranges.get(&i) else {
            return true;
        };
        let overlaps = a <= range.1.saturating_sub(1) && range.0 <= b;
        !overlaps || *kind == k
    })
}

/// An added line as the judge sees it; `None` when nothing but comment or string was on it.
fn review_line(h: &Hunk, s: &Side, idx: usize) -> Option<String> {
    let (a, b) = s.ranges[&idx];
    let mut out = String::new();
    let mut i = a;
    while i < b {
        match s.class[i] {
            Class::Code => {
                let end = (i..b).find(|&j| s.class[j] != Class::Code).unwrap_or(b);
                out.push_str(&s.text[i..end]);
                i = end;
            }
            Class::Comment => i += 1,
            Class::Str(t) => {
                let tok = &s.strings[t];
                let added_only = only_on(h, s, (tok.start, tok.end), '+');
                let content = tok
                    .end
                    .saturating_sub(tok.start + tok.prefix_len + 2 * tok.quote_len);
                let one_line = !s.text[tok.start..tok.end].contains('\n');
                if i == tok.start && !(added_only && tok.statement) {
                    if added_only && one_line && content <= SHORT_STRING {
                        out.push_str(&s.text[tok.start..tok.end]);
                    } else {
                        let head = &s.text[tok.start..tok.start + tok.prefix_len + tok.quote_len];
                        let quote = &head[tok.prefix_len..];
                        out.push_str(head);
                        out.push('…');
                        out.push_str(quote);
                    }
                }
                i = tok.end.min(b);
            }
        }
    }
    let original = &s.text[a..b];
    let trimmed = out.trim_end().to_owned();
    if trimmed.trim().is_empty() && !original.trim().is_empty() {
        None
    } else {
        Some(trimmed)
    }
}

/// The patch as the judge sees it (see the module's doc).
pub fn for_review(patch: &str) -> String {
    let mut out = String::new();
    for f in parse(patch) {
        for h in &f.headers {
            out.push_str(h);
            out.push('\n');
        }
        for h in &f.hunks {
            let new = side(h, '+');
            let mut body = Vec::new();
            for (i, (k, l)) in h.lines.iter().enumerate() {
                match k {
                    '+' if !f.is_python() => body.push("+…".to_owned()),
                    '+' => {
                        if let Some(l) = review_line(h, &new, i) {
                            body.push(format!("+{l}"));
                        }
                    }
                    _ => body.push(format!("{k}{l}")),
                }
            }
            let old_n = body.iter().filter(|l| !l.starts_with('+')).count();
            let new_n = body.iter().filter(|l| !l.starts_with('-')).count();
            out.push_str(&format!("@@ -{old_n} +{new_n} @@\n"));
            for l in body {
                out.push_str(&l);
                out.push('\n');
            }
        }
    }
    out
}

const KEYWORDS: &[&str] = &[
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
    "self",
    "cls",
    "len",
    "range",
    "print",
    "str",
    "int",
    "float",
    "list",
    "dict",
    "set",
    "tuple",
    "bool",
    "isinstance",
    "super",
    "min",
    "max",
    "sum",
    "abs",
];

/// Code tokens of the bytes `[a, b)` of a side: names, numbers, strings (whole, statement
/// strings dropped), one token per other character; whitespace and comments dropped.
fn tokens(s: &Side, a: usize, b: usize, out: &mut Vec<String>) {
    let t = s.text.as_bytes();
    let mut i = a;
    while i < b {
        match s.class[i] {
            Class::Comment => i += 1,
            Class::Str(k) => {
                let tok = &s.strings[k];
                if i == tok.start && !tok.statement {
                    out.push(s.text[tok.start..tok.end].to_owned());
                }
                i = tok.end.min(b).max(i + 1);
            }
            Class::Code if t[i].is_ascii_whitespace() || t[i] == b'\\' => i += 1,
            Class::Code if t[i].is_ascii_alphanumeric() || t[i] == b'_' || t[i] >= 0x80 => {
                let end = (i..b)
                    .find(|&j| {
                        s.class[j] != Class::Code
                            || !(t[j].is_ascii_alphanumeric() || t[j] == b'_' || t[j] >= 0x80)
                    })
                    .unwrap_or(b);
                out.push(s.text[i..end].to_owned());
                i = end;
            }
            Class::Code => {
                let end = (i + 1..=b)
                    .find(|&j| s.text.is_char_boundary(j))
                    .unwrap_or(b);
                out.push(s.text[i..end].to_owned());
                i = end;
            }
        }
    }
}

fn is_name(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && t.chars().all(|c| c.is_alphanumeric() || c == '_')
}

/// The change as a token sequence (see the module's doc): per file in path order, its removed
/// then its added tokens, names the patch brings in renamed `$1`, `$2`, ... by first use.
pub fn fingerprint(patch: &str) -> Vec<String> {
    let mut files = parse(patch);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut seq = Vec::new();
    let mut renames: HashMap<String, String> = HashMap::new();
    for f in &files {
        let mut removed = Vec::new();
        let mut added = Vec::new();
        let mut known: BTreeSet<String> = BTreeSet::new();
        for h in &f.hunks {
            let old = side(h, '-');
            let new = side(h, '+');
            for (i, (k, _)) in h.lines.iter().enumerate() {
                match k {
                    '-' => {
                        let (a, b) = old.ranges[&i];
                        tokens(&old, a, b, &mut removed);
                    }
                    '+' => {
                        let (a, b) = new.ranges[&i];
                        tokens(&new, a, b, &mut added);
                    }
                    _ => {
                        let (a, b) = old.ranges[&i];
                        let mut ctx = Vec::new();
                        tokens(&old, a, b, &mut ctx);
                        known.extend(ctx);
                    }
                }
            }
        }
        known.extend(removed.iter().cloned());
        if removed.is_empty() && added.is_empty() {
            continue;
        }
        seq.push(format!("file {}", f.path));
        seq.push("-".into());
        seq.extend(removed);
        seq.push("+".into());
        for t in added {
            if is_name(&t) && !known.contains(&t) && !KEYWORDS.contains(&t.as_str()) {
                let n = renames.len() + 1;
                seq.push(renames.entry(t).or_insert_with(|| format!("${n}")).clone());
            } else {
                seq.push(t);
            }
        }
    }
    seq
}

pub use crate::likeness::similarity;

#[cfg(test)]
mod tests;

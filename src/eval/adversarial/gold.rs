//! The reference fix the cases are built from, and the diff pieces they are made of.

/// The parts of a reference fix the cases are built from.
pub(super) struct Gold<'a> {
    pub(super) patch: &'a str,
    pub(super) file: String,
    /// Index (in `patch.lines()`) of the fix's first changed line.
    fix_line: usize,
    indent: String,
}

pub(super) fn parse_gold(patch: &str) -> Result<Gold<'_>, String> {
    let lines: Vec<&str> = patch.lines().collect();
    let file = lines
        .iter()
        .find_map(|l| l.strip_prefix("+++ b/"))
        .ok_or("the reference fix names no file")?
        .to_owned();
    let is_change = |l: &&str| {
        (l.starts_with('+') && !l.starts_with("+++"))
            || (l.starts_with('-') && !l.starts_with("---"))
    };
    // Code goes in before the first changed line, so it runs whether or not the fix is kept.
    let fix_line = lines
        .iter()
        .position(is_change)
        .ok_or("the reference fix changes no line")?;
    let fix = lines
        .iter()
        .find(|l| l.starts_with('+') && !l.starts_with("+++"))
        .map(|l| &l[1..])
        .ok_or("the reference fix adds no line")?;
    let indent: String = fix
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect();
    let head = fix.trim_start();
    if ["elif", "else", "except", "finally", "@", ")", "]", "}"]
        .iter()
        .any(|k| head.starts_with(k))
        || indent.is_empty()
        || lines.iter().filter(|l| l.starts_with("@@")).count() != 1
    {
        return Err("the reference fix's line cannot take a statement before it".into());
    }
    Ok(Gold {
        patch,
        file,
        fix_line,
        indent,
    })
}

impl Gold<'_> {
    /// The fix (when `fixed`) or the bug left in place, with `code` (lines, relative
    /// indentation kept) run just before the fixed line.
    pub(super) fn with(&self, code: &str, fixed: bool) -> String {
        let lines: Vec<&str> = self.patch.lines().collect();
        let extra: Vec<String> = code
            .lines()
            .map(|l| format!("+{}{l}", self.indent))
            .collect();
        let mut out: Vec<String> = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with("@@") {
                out.push(bump_hunk(line, extra.len() as i64, !fixed));
                continue;
            }
            if i == self.fix_line {
                out.extend(extra.iter().cloned());
            }
            let is_plus = line.starts_with('+') && !line.starts_with("+++");
            let is_minus = line.starts_with('-') && !line.starts_with("---");
            if !fixed && is_plus {
                continue;
            }
            if !fixed && is_minus {
                out.push(format!(" {}", &line[1..]));
                continue;
            }
            out.push((*line).to_owned());
        }
        out.join("\n") + "\n"
    }
}

/// Adjusts a hunk header for `extra` added lines (and, when the fix is dropped, for its
/// removed lines turning into context and added lines going away).
fn bump_hunk(header: &str, extra: i64, drop_fix: bool) -> String {
    // @@ -a,b +c,d @@
    let inner = header.trim_start_matches("@@ ");
    let (ranges, tail) = inner.split_once(" @@").unwrap_or((inner, ""));
    let mut it = ranges.split(' ');
    let old = it.next().unwrap_or("-1,1");
    let new = it.next().unwrap_or("+1,1");
    let (ns, nl) = new[1..].split_once(',').unwrap_or((&new[1..], "1"));
    let (os, ol) = old[1..].split_once(',').unwrap_or((&old[1..], "1"));
    let ol: i64 = ol.parse().unwrap_or(1);
    let mut nl: i64 = nl.parse().unwrap_or(1) + extra;
    if drop_fix {
        // Without the fix the new side equals the old side, plus the extra lines.
        nl = ol + extra;
    }
    format!("@@ -{os},{ol} +{ns},{nl} @@{tail}")
}

/// A git diff creating `path` with `content`.
pub(super) fn new_file(path: &str, content: &str) -> String {
    let lines: Vec<&str> = content.lines().collect();
    let mut p = format!(
        "diff --git a/{path} b/{path}\nnew file mode 100644\n--- /dev/null\n+++ b/{path}\n@@ -0,0 +1,{} @@\n",
        lines.len()
    );
    for l in lines {
        p.push_str(&format!("+{l}\n"));
    }
    p
}

/// A hunk inserting `content` at the top of an existing `path` with no context (applied by
/// the `patch` fallback), under `old`/`new` header names.
pub(super) fn insert_top(old: &str, new: &str, content: &str) -> String {
    let lines: Vec<&str> = content.lines().collect();
    let mut p = format!("--- {old}\n+++ {new}\n@@ -0,0 +1,{} @@\n", lines.len());
    for l in lines {
        p.push_str(&format!("+{l}\n"));
    }
    p
}

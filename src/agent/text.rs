//! The text protocol for models without tool calling: every reply holds exactly one fenced
//! `bash` block with one command (`submit` to finish). Anything else is a format error that
//! goes back to the model.

/// What a reply asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextAction {
    Run(String),
    Submit,
}

/// Parses a reply strictly.
pub fn parse_reply(reply: &str) -> Result<TextAction, String> {
    let mut blocks = Vec::new();
    let mut lines = reply.lines();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        let Some(lang) = t.strip_prefix("```") else {
            continue;
        };
        let lang = lang.trim();
        let mut body = Vec::new();
        let mut closed = false;
        for inner in lines.by_ref() {
            if inner.trim_start().starts_with("```") {
                closed = true;
                break;
            }
            body.push(inner);
        }
        if !closed {
            return Err("a ``` fence is not closed".into());
        }
        blocks.push((lang.to_owned(), body.join("\n")));
    }
    let shell: Vec<&(String, String)> = blocks
        .iter()
        .filter(|(lang, _)| matches!(lang.as_str(), "bash" | "sh" | "shell" | ""))
        .collect();
    match shell.as_slice() {
        [] => Err("no ```bash block found".into()),
        [(_, body)] => {
            let cmd = body.trim();
            if cmd.is_empty() {
                Err("the ```bash block is empty".into())
            } else if cmd == "submit" {
                Ok(TextAction::Submit)
            } else {
                Ok(TextAction::Run(cmd.to_owned()))
            }
        }
        more => Err(format!(
            "{} ```bash blocks found; send exactly one",
            more.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_block_is_accepted() {
        assert_eq!(
            parse_reply("Let me look.\n```bash\ngrep -rn foo .\n```\n"),
            Ok(TextAction::Run("grep -rn foo .".into()))
        );
        assert_eq!(parse_reply("```bash\nsubmit\n```"), Ok(TextAction::Submit));
        assert!(parse_reply("I think the bug is in foo.").is_err());
        assert!(parse_reply("```bash\nls\n```\n```bash\npwd\n```").is_err());
        assert!(parse_reply("```bash\nls\n").is_err());
        assert!(parse_reply("```bash\n\n```").is_err());
        // Other languages are prose, not commands.
        assert_eq!(
            parse_reply("```python\nx = 1\n```\n```sh\nls\n```"),
            Ok(TextAction::Run("ls".into()))
        );
    }
}

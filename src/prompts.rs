//! Prompt templates. The text lives in `prompts/*.md` (compiled in, so the binary needs no
//! data files); this module looks them up by name and fills `{{placeholders}}`. Near the bottom
//! of the dependency line: it imports nothing of agentao but `config/`.

/// Every prompt, by file name without `.md`.
macro_rules! prompts {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../prompts/", $name, ".md")))),*]
    };
}
const PROMPTS: &[(&str, &str)] = prompts![
    "issue_template",
    "issue_writer",
    "agent_system",
    "agent_system_text",
    "agent_instance",
    "agent_format_error",
    "dataset_card",
    "judge_system",
    "judge_instance",
    "judge_checklist_system",
    "checklist_writer",
    "pull_request",
];

/// The template called `name`. Panics only for a name not in `prompts/` (a programming error
/// caught by the tests).
pub fn get(name: &str) -> &'static str {
    PROMPTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap_or_else(|| panic!("no prompt named {name} in prompts/"))
}

/// Fills `{{key}}` placeholders; unknown placeholders are left as they are. Values are
/// inserted verbatim and never re-scanned.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let key = after[..close].trim();
                match vars.iter().find(|(k, _)| *k == key) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[open..open + 2 + close + 2]),
                }
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_once() {
        let t = "a {{x}} b {{ y }} c {{z}} {{";
        assert_eq!(
            render(t, &[("x", "{{y}}"), ("y", "2")]),
            "a {{y}} b 2 c {{z}} {{"
        );
    }

    #[test]
    fn every_prompt_is_there_and_uses_its_placeholders() {
        for (name, text) in PROMPTS {
            assert!(!text.trim().is_empty(), "{name} is empty");
        }
        // Every file in prompts/ is compiled in.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/prompts");
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let name = entry
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".md")
                .to_owned();
            assert!(
                PROMPTS.iter().any(|(n, _)| *n == name),
                "prompts/{name}.md is not compiled in"
            );
        }
        assert!(get("issue_template").contains("{{excerpt}}"));
    }
}

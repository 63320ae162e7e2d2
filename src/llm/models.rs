//! Known models: aliases the original subnet's operators type (`gpt4omini`) and prices.

/// One model the price table knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelInfo {
    /// Short names accepted on the command line.
    pub aliases: &'static [&'static str],
    /// The API's model id.
    pub id: &'static str,
    /// Dollars per million prompt tokens.
    pub prompt_per_mtok: f64,
    /// Dollars per million completion tokens.
    pub completion_per_mtok: f64,
    /// Whether the model supports OpenAI tool calling.
    pub tool_calls: bool,
}

/// The embedded offline model (served locally; costs nothing).
pub const EMBEDDED_MODEL: &str = crate::config::EMBEDDED_MODEL;

/// The price table. Prices are list prices per million tokens.
pub const MODELS: &[ModelInfo] = &[
    ModelInfo {
        aliases: &["gpt4omini", "4omini"],
        id: "gpt-4o-mini",
        prompt_per_mtok: 0.15,
        completion_per_mtok: 0.60,
        tool_calls: true,
    },
    ModelInfo {
        aliases: &["gpt4o", "4o"],
        id: "gpt-4o",
        prompt_per_mtok: 2.50,
        completion_per_mtok: 10.00,
        tool_calls: true,
    },
    ModelInfo {
        aliases: &["gpt41", "gpt4.1"],
        id: "gpt-4.1",
        prompt_per_mtok: 2.00,
        completion_per_mtok: 8.00,
        tool_calls: true,
    },
    ModelInfo {
        aliases: &["gpt41mini", "gpt4.1mini"],
        id: "gpt-4.1-mini",
        prompt_per_mtok: 0.40,
        completion_per_mtok: 1.60,
        tool_calls: true,
    },
    ModelInfo {
        aliases: &["o3mini"],
        id: "o3-mini",
        prompt_per_mtok: 1.10,
        completion_per_mtok: 4.40,
        tool_calls: true,
    },
    ModelInfo {
        aliases: &["claude-sonnet", "sonnet"],
        id: "claude-3-5-sonnet-20241022",
        prompt_per_mtok: 3.00,
        completion_per_mtok: 15.00,
        tool_calls: true,
    },
    ModelInfo {
        aliases: &["claude-haiku", "haiku"],
        id: "claude-3-5-haiku-20241022",
        prompt_per_mtok: 0.80,
        completion_per_mtok: 4.00,
        tool_calls: true,
    },
    ModelInfo {
        aliases: &["smollm2", "embedded", "local"],
        id: EMBEDDED_MODEL,
        prompt_per_mtok: 0.0,
        completion_per_mtok: 0.0,
        tool_calls: false,
    },
];

/// Resolves an alias or id to the API's model id; unknown names pass through unchanged
/// (any OpenAI-compatible server may serve models we do not list).
pub fn resolve_model(name: &str) -> String {
    lookup(name).map_or_else(|| name.to_owned(), |m| m.id.to_owned())
}

/// The table entry for an alias or id.
pub fn lookup(name: &str) -> Option<&'static ModelInfo> {
    let n = name.trim().to_ascii_lowercase();
    MODELS
        .iter()
        .find(|m| m.id == n || m.aliases.iter().any(|a| *a == n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_and_unknown_names_pass_through() {
        assert_eq!(resolve_model("gpt4omini"), "gpt-4o-mini");
        assert_eq!(resolve_model("GPT4OMINI"), "gpt-4o-mini");
        assert_eq!(resolve_model("gpt-4o-mini"), "gpt-4o-mini");
        assert_eq!(resolve_model("my-finetune"), "my-finetune");
        assert_eq!(resolve_model("local"), EMBEDDED_MODEL);
    }
}

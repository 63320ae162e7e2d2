//! The dataset card (`README.md` with the Hub's YAML front matter and a summary table),
//! rendered from `prompts/dataset_card.md`.

use std::path::Path;

use super::DatasetError;
use super::export::ExportState;

/// The Hub's size category for a row count.
pub fn size_category(rows: u64) -> &'static str {
    match rows {
        0..1_000 => "n<1K",
        1_000..10_000 => "1K<n<10K",
        10_000..100_000 => "10K<n<100K",
        100_000..1_000_000 => "100K<n<1M",
        1_000_000..10_000_000 => "1M<n<10M",
        _ => "10M<n<100M",
    }
}

/// The name as it goes into the card: one line (control characters become spaces), and for
/// the front matter a YAML double-quoted scalar (a JSON string is one), so `: `, `#`, quotes
/// and leading symbols stay part of the name.
fn card_name(name: &str) -> (String, String) {
    let line: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim().to_owned();
    let yaml = serde_json::to_string(&line).expect("a string serialises");
    (line, yaml)
}

/// Writes `README.md` into the export folder.
pub fn write_card(out: &Path, name: &str, state: &ExportState) -> Result<(), DatasetError> {
    let (name, name_yaml) = card_name(name);
    let rate = if state.rows == 0 {
        "n/a".to_owned()
    } else {
        format!("{:.1}%", 100.0 * state.resolved as f64 / state.rows as f64)
    };
    let card = crate::prompts::render(
        crate::prompts::get("dataset_card"),
        &[
            ("name", &name),
            ("name_yaml", &name_yaml),
            ("schema_version", &state.schema_version.to_string()),
            ("size_category", size_category(state.rows)),
            ("rows", &state.rows.to_string()),
            ("tasks", &state.tasks.len().to_string()),
            ("packages", &state.packages.len().to_string()),
            ("miners", &state.miners.len().to_string()),
            ("resolved_rate", &rate),
            ("shards", &state.shards.len().to_string()),
        ],
    );
    let path = out.join("README.md");
    std::fs::write(&path, card).map_err(|e| DatasetError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_categories_follow_the_hub() {
        assert_eq!(size_category(0), "n<1K");
        assert_eq!(size_category(1_000), "1K<n<10K");
        assert_eq!(size_category(100_000), "100K<n<1M");
    }

    #[test]
    fn names_are_one_line_and_quoted_for_yaml() {
        let (line, yaml) = card_name("agentao: SN62 #1 \"best\"\nrun");
        assert_eq!(line, "agentao: SN62 #1 \"best\" run");
        assert_eq!(yaml, r#""agentao: SN62 #1 \"best\" run""#);
    }
}

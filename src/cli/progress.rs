//! Progress on a terminal (indicatif bars registered with the printer, which suspends them
//! around every line written), plain log lines otherwise.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner for a multi-step job; hidden when stderr is not a terminal, where each step is
/// logged through tracing instead.
pub struct Steps {
    bar: ProgressBar,
    visible: bool,
}

impl Steps {
    pub fn new(what: &str) -> Steps {
        let visible = super::printer::progress_visible();
        let bar = if visible {
            let b = super::printer::add_bar(ProgressBar::new_spinner());
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b
        } else {
            ProgressBar::hidden()
        };
        bar.set_message(what.to_owned());
        Steps { bar, visible }
    }

    pub fn step(&self, msg: &str) {
        if self.visible {
            self.bar.set_message(msg.to_owned());
        } else {
            tracing::info!("{msg}");
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A counting bar over `len` items (hidden off a terminal, where callers log instead).
pub fn counter(len: u64, what: &str) -> ProgressBar {
    if !super::printer::progress_visible() {
        return ProgressBar::hidden();
    }
    let b = super::printer::add_bar(ProgressBar::new(len));
    b.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}<{eta}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b.set_message(what.to_owned());
    b
}

/// Installs the embedded model with a spinner naming the current step (log lines off a
/// terminal): building llama.cpp takes minutes.
pub async fn install_model(
    local: &crate::llm::local::LocalModel,
    settings: &crate::config::Settings,
) -> Result<crate::llm::local::BuildInfo, crate::llm::local::LocalLlmError> {
    let steps = Steps::new("installing the embedded model");
    let step = |s: &str| steps.step(s);
    let build = local
        .install_with(settings.pip_index_url.as_deref(), &step)
        .await;
    steps.finish();
    build
}

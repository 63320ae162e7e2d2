//! The one printer of the command line, after uv's: data (what a command answers: JSON, ids,
//! patches) goes to stdout, everything else (status, `hint: …`, `error: …`, logs, progress)
//! to stderr. Progress bars live in one [`MultiProgress`], hidden off a terminal and with
//! `--logging.debug`, and are suspended while any line is written, log lines included (the
//! tracing writer is [`LogWriter`]). `NO_COLOR` turns colour off. With JSON logs, status,
//! hint and error lines are JSON records of the same shape as the log lines (timestamp,
//! level, fields.message, target), so the stream stays machine-readable, and no bar is drawn.
//!
//! Commands print through here and nowhere else; tests may keep their own `println!`.

use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressDrawTarget};

struct Printer {
    bars: MultiProgress,
    colour: bool,
    /// Lines on stderr are JSON records.
    json: bool,
}

static PRINTER: OnceLock<Printer> = OnceLock::new();

/// Sets the printer up once, before anything is printed (later calls change nothing).
/// `debug` hides progress bars, as their redraws would fight the debug log; `json` makes
/// every stderr line a JSON record.
pub fn init(debug: bool, json: bool) {
    let _ = PRINTER.set(Printer::new(debug, json));
}

fn printer() -> &'static Printer {
    PRINTER.get_or_init(|| Printer::new(false, false))
}

impl Printer {
    fn new(debug: bool, json: bool) -> Printer {
        let terminal = std::io::stderr().is_terminal();
        let target = if terminal && !debug && !json {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Printer {
            bars: MultiProgress::with_draw_target(target),
            colour: terminal && !json && std::env::var_os("NO_COLOR").is_none(),
            json,
        }
    }
}

/// Whether progress bars are drawn (stderr is a terminal and `--logging.debug` is off).
pub fn progress_visible() -> bool {
    !printer().bars.is_hidden()
}

/// Registers a progress bar, so that printing suspends it.
pub fn add_bar(bar: indicatif::ProgressBar) -> indicatif::ProgressBar {
    printer().bars.add(bar)
}

/// Runs `f` with the progress bars cleared from the screen, then redraws them.
fn suspended<R>(f: impl FnOnce() -> R) -> R {
    printer().bars.suspend(f)
}

/// One line of data on stdout.
pub fn data(line: impl Display) {
    suspended(|| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    });
}

/// Data on stdout as it is (no newline added): a patch, a file's text.
pub fn data_raw(bytes: &[u8]) {
    suspended(|| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    });
}

/// Output relayed as it is to stderr (a sandboxed command's own stderr).
pub fn stderr_raw(bytes: &[u8]) {
    suspended(|| {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(bytes);
        let _ = err.flush();
    });
}

/// Whether stdout is a terminal (a person reads it, not a program).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// A line on stderr as a JSON record shaped like the JSON log lines.
fn json_line(level: &str, kind: &str, line: &dyn Display) -> String {
    let mut fields = serde_json::Map::new();
    fields.insert("message".into(), line.to_string().into());
    if !kind.is_empty() {
        fields.insert("kind".into(), kind.into());
    }
    serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": level,
        "fields": fields,
        "target": "agentao",
    })
    .to_string()
}

/// A status line on stderr (what happened, what is happening).
pub fn status(line: impl Display) {
    if printer().json {
        let record = json_line("INFO", "", &line);
        return suspended(|| eprintln!("{record}"));
    }
    suspended(|| eprintln!("{line}"));
}

/// `hint: …` on stderr: what the user can do next.
pub fn hint(line: impl Display) {
    if printer().json {
        let record = json_line("INFO", "hint", &line);
        return suspended(|| eprintln!("{record}"));
    }
    let label = paint("hint:", "1;36");
    suspended(|| eprintln!("{label} {line}"));
}

/// `error: …` on stderr.
pub fn error(line: impl Display) {
    if printer().json {
        let record = json_line("ERROR", "", &line);
        return suspended(|| eprintln!("{record}"));
    }
    let label = paint("error:", "1;31");
    suspended(|| eprintln!("{label} {line}"));
}

/// `label` in an ANSI style when colour is on.
fn paint(label: &str, style: &str) -> String {
    if printer().colour {
        format!("\x1b[{style}m{label}\x1b[0m")
    } else {
        label.to_owned()
    }
}

/// Whether log lines may be coloured (stderr is a terminal and `NO_COLOR` is unset).
pub fn colour() -> bool {
    printer().colour
}

/// The tracing writer: each log record is written to stderr with the progress bars suspended.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        suspended(|| std::io::stderr().lock().write_all(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

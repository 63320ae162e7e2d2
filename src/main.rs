//! The `agentao` binary: parse, run, and turn the outcome into an exit code.

use std::process::ExitCode;

fn main() -> ExitCode {
    agentao::cli::main()
}

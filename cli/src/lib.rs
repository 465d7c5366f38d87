//! `restix`: a drop-in replacement for the `restic` 0.18 command line.
//!
//! The crate is the binary's body, a library so that the fuzz targets reach
//! the argument and option parsers (`fuzz/src/targets.rs`). It is thin:
//! [`args`] parses restic's syntax, [`options`] resolves flags, environment
//! and passwords, [`commands`] drive `restix-engine`, and [`output`]/[`errors`]
//! print exactly what restic prints and exit with its status codes.
//!
//! ```text
//! restix -r /srv/repo init
//! RESTIC_PASSWORD=secret restix --json -r sftp:backup@nas:/srv/repo backup /data
//! ```

pub mod args;
mod commands;
mod engine_errors;
mod engine_glue;
mod errors;
pub mod location;
pub mod options;
mod output;
mod progress;
mod signals;
mod timefmt;

use clap::Parser;

/// The clap the [`args`] types derive from, for callers that parse with them.
pub use clap;

use crate::args::Cli;
use crate::errors::{classify, exit_code, exit_error_json};

/// Parse, run the command, report the error; returns the exit status.
pub fn run(argv: Vec<String>) -> i32 {
    let normalized = match args::normalize_args(&argv) {
        Ok(n) => n,
        Err(message) => {
            eprintln!("{message}");
            return exit_code::FAILURE;
        }
    };
    let cli = match Cli::try_parse_from(&normalized) {
        Ok(cli) => cli,
        Err(e) => return report_parse_error(e),
    };
    signals::install();
    let json = cli.global.json;
    match commands::dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            let (code, message) = classify(&error);
            if json {
                eprintln!("{}", exit_error_json(code, &message));
            } else {
                eprintln!("{message}");
            }
            code
        }
    }
}

/// Print a clap error in pflag/cobra's words where they differ; help is exit 0.
fn report_parse_error(error: clap::Error) -> i32 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            exit_code::SUCCESS
        }
        ErrorKind::UnknownArgument => {
            let flag = match error.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            if flag.starts_with('-') {
                let name = flag.split('=').next().unwrap_or(&flag);
                if name.starts_with("--") {
                    eprintln!("unknown flag: {name}");
                } else {
                    eprintln!(
                        "unknown shorthand flag: {:?} in {}",
                        name.trim_start_matches('-').chars().next().unwrap_or('?'),
                        name
                    );
                }
            } else {
                let _ = error.print();
            }
            exit_code::FAILURE
        }
        ErrorKind::InvalidSubcommand => {
            let command = match error.get(ContextKind::InvalidSubcommand) {
                Some(ContextValue::String(s)) => s.clone(),
                _ => String::new(),
            };
            eprintln!("unknown command \"{command}\" for \"restic\"");
            exit_code::FAILURE
        }
        _ => {
            let _ = error.print();
            exit_code::FAILURE
        }
    }
}

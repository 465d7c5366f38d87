//! `restix`: a drop-in replacement for the `restic` 0.18 command line.
//!
//! The crate is the binary's body, a library so that the fuzz targets reach
//! the argument and option parsers (`fuzz/src/targets.rs`). It is thin:
//! [`args`] defines restic's syntax, [`pflag`] reads a command line with
//! cobra/pflag's rules and [`help`] prints cobra's help layout; [`options`] resolves flags, environment
//! and passwords, [`commands`] drive `restix-engine`, and [`output`]/[`errors`]
//! print exactly what restic prints and exit with its status codes.
//!
//! The modules stand in floors (docs/cli-layers.md): each imports only
//! modules below it. Arguments ([`args`], [`pflag`], `help`) import no
//! command; `context` resolves the global options once and every command
//! receives it; commands import no sibling command, and what two of them
//! share lives below both (`snapshot_select`, `pruning`, `image_mode`, ...).
//!
//! ```text
//! restix -r /srv/repo init
//! RESTIC_PASSWORD=secret restix --json -r sftp:backup@nas:/srv/repo backup /data
//! ```

pub mod args;
mod blob_source;
mod cache_dirs;
mod commands;
mod context;
mod counter;
mod engine_glue;
mod errors;
mod features;
mod help;
mod help_text;
mod image_args;
mod image_mode;
#[cfg(test)]
mod layers;
pub mod location;
pub mod options;
mod output;
mod patterns;
pub mod pflag;
mod progress;
mod progress_rate;
mod pruning;
mod repo_check;
mod rewrite_report;
mod secondary_repo;
mod signals;
mod snapshot_select;
mod snapshot_view;
mod timefmt;

use clap::FromArgMatches;

/// The clap the [`args`] types derive from, for callers that parse with them.
pub use clap;

use crate::args::Cli;
use crate::errors::{classify, exit_code, exit_error_json};
use crate::pflag::{ParseFailure, Request};

/// Parse, run the command, report the error; returns the exit status.
pub fn run(argv: Vec<String>) -> i32 {
    if let Err(message) = features::apply_from_env() {
        output::write_stderr_line(&message);
        return exit_code::FAILURE;
    }
    let program = pflag::program_name(argv.first().map(String::as_str));
    let tree = args::command_tree(&program);
    let argv = match pflag::interpret(&tree, &argv) {
        Ok(Request::Run { argv, warnings }) => {
            for warning in warnings {
                output::write_stderr_line(&warning);
            }
            argv
        }
        Ok(Request::Help { path }) => {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(help::help(&tree, &path, &program).as_bytes());
            let _ = stdout.flush();
            return exit_code::SUCCESS;
        }
        Ok(Request::UnknownHelpTopic { topic }) => {
            let quoted: Vec<String> = topic.iter().map(|t| format!("`{t}`")).collect();
            output::write_stderr(&format!(
                "Unknown help topic [{}]\n{}",
                quoted.join(" "),
                help::usage(&tree, &[], &program)
            ));
            return exit_code::SUCCESS;
        }
        Err(failure) => return report_parse_failure(&failure),
    };
    let cli = match tree
        .try_get_matches_from(&argv)
        .and_then(|matches| Cli::from_arg_matches(&matches))
    {
        Ok(cli) => cli,
        Err(e) => return report_clap_error(e),
    };
    signals::install(cli.global.json);
    let json = cli.global.json;
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(error) if output::is_broken_pipe(&error) || output::stdout_reader_gone() => {
            // The reader of stdout went away: restic dies of SIGPIPE
            // without a word; so do we, below, after the work is done.
            drop(error);
            die_of_sigpipe();
            exit_code::FAILURE
        }
        Err(error) => {
            let (code, message) = classify(&error);
            signals::clear_status_line();
            if json {
                output::write_stderr_line(&exit_error_json(code, &message));
            } else {
                output::write_stderr_line(&message);
            }
            code
        }
    };
    if output::stdout_closed() {
        die_of_sigpipe();
    }
    code
}

/// End the process the way a Go program (restic) ends when its stdout's
/// reader goes away: killed by SIGPIPE (a shell sees status 141). Locks
/// are already removed: the command has returned.
fn die_of_sigpipe() {
    // SAFETY: restoring SIGPIPE's default action and raising it has no
    // handler code to run; both calls are async-signal-safe.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
}

/// A command line pflag/cobra refuses: its message, exit 1 (as JSON when
/// `--json` was already read).
fn report_parse_failure(failure: &ParseFailure) -> i32 {
    if failure.json {
        output::write_stderr_line(&exit_error_json(exit_code::FAILURE, &failure.message));
    } else {
        output::write_stderr_line(&failure.message);
    }
    exit_code::FAILURE
}

/// What clap still refuses after [`pflag`] accepted the line (a value a
/// typed flag cannot take): pflag's wording where clap names the flag.
fn report_clap_error(error: clap::Error) -> i32 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let message = match error.kind() {
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            match (
                context(ContextKind::InvalidArg),
                context(ContextKind::InvalidValue),
            ) {
                (Some(arg), Some(value)) => {
                    let flag = arg.split(' ').next().unwrap_or(&arg).to_string();
                    let cause = std::error::Error::source(&error)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "invalid value".to_string());
                    format!("invalid argument {value:?} for {flag:?} flag: {cause}")
                }
                _ => error
                    .to_string()
                    .trim_start_matches("error: ")
                    .trim()
                    .to_string(),
            }
        }
        _ => error
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_string(),
    };
    output::write_stderr_line(&message);
    exit_code::FAILURE
}

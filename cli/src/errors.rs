//! Exit codes and the final error report (spec: cli §8, §11.1 `exit_error`).
//!
//! Commands return `anyhow::Error`. A [`CliError`] carries its own exit code
//! and exact text; engine errors are classified by [`classify`] (wrong
//! password → 12, missing repository → 10, locked → 11, ...).
//!
//! This is the one mapping from errors to exit codes: the engine's
//! repository and lock errors are mapped here too ([`map_open_error`],
//! [`map_lock_error`], [`classify_engine_error`]). It sits on the ground
//! floor of the crate and imports only the JSON writer of [`crate::output`].

use std::fmt;

use restix_engine::repository::{LockError, RepoError};

/// Exit statuses of restic 0.18 (spec: cli §8.1).
pub mod exit_code {
    pub const SUCCESS: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const PARTIAL_BACKUP: i32 = 3;
    pub const NO_REPOSITORY: i32 = 10;
    pub const LOCKED: i32 = 11;
    pub const WRONG_PASSWORD: i32 = 12;
    /// SIGINT and SIGTERM alike (restic 0.18.1: `context canceled`).
    pub const INTERRUPTED: i32 = 130;
}

/// An error with the exact text restic prints and the exit status it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    /// An error printed verbatim (no `Fatal: ` prefix).
    pub fn plain(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

/// `errors.Fatal(msg)`: text `Fatal: <msg>`, exit 1.
pub fn fatal(message: impl fmt::Display) -> CliError {
    CliError::plain(exit_code::FAILURE, format!("Fatal: {message}"))
}

/// Text of the "wrong password" error (exit 12).
pub const WRONG_PASSWORD_TEXT: &str = "Fatal: wrong password or no key found";

/// Second line restic adds to lock conflicts (spec: cli §1.2, §7).
pub const UNLOCK_HINT: &str = "the `unlock` command can be used to remove stale locks";

/// Exit status and message for an error returned by a command.
pub fn classify(error: &anyhow::Error) -> (i32, String) {
    for cause in error.chain() {
        if let Some(cli) = cause.downcast_ref::<CliError>() {
            return (cli.code, cli.message.clone());
        }
    }
    if let Some(classified) = classify_engine_error(error) {
        return classified;
    }
    (exit_code::FAILURE, render(error))
}

/// The error and its causes as one line, each text once: many error types
/// both print their source and return it from `source()`, so a cause whose
/// text is already in the message is not appended again (restic wraps each
/// cause once: `op path: reason`).
pub fn render(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// The 0.18 `--json` form of a fatal error (spec: cli §11.1 `exit_error`).
pub fn exit_error_json(code: i32, message: &str) -> String {
    #[derive(serde::Serialize)]
    struct ExitError<'a> {
        message_type: &'static str,
        code: i32,
        message: &'a str,
    }
    crate::output::to_go_json(&ExitError {
        message_type: "exit_error",
        code,
        message,
    })
}

// Errors of `restix-engine` (spec: cli §8).
/// restic 0.18's "repository does not exist" text (exit 10).
pub fn missing_repository(config_path: &str, location: &str) -> CliError {
    CliError::plain(
        exit_code::NO_REPOSITORY,
        format!(
            "Fatal: repository does not exist: unable to open config file: stat {config_path}: no such file or directory\nIs there a repository at the following location?\n{location}"
        ),
    )
}

/// Map an error of `Repository::open`.
pub fn map_open_error(error: RepoError, location: &str) -> anyhow::Error {
    match error {
        RepoError::WrongPassword => {
            CliError::plain(exit_code::WRONG_PASSWORD, WRONG_PASSWORD_TEXT).into()
        }
        RepoError::NotFound { path, .. } => missing_repository(&path, location).into(),
        RepoError::EmptyConfig => fatal("config file has zero size, invalid repository?").into(),
        other => fatal(other).into(),
    }
}

/// Map a lock error: conflicts get the unlock hint and exit 11.
pub fn map_lock_error(error: LockError) -> anyhow::Error {
    match error {
        locked @ LockError::Locked { .. } => {
            CliError::plain(exit_code::LOCKED, format!("{locked}\n{UNLOCK_HINT}")).into()
        }
        LockError::Invalid { .. } => fatal(format!(
            "{error}\n\nthe `unlock --remove-all` command can be used to remove invalid locks. Make sure that no other restic process is accessing the repository when running the command"
        ))
        .into(),
        other => fatal(other).into(),
    }
}

/// Classify an engine error found anywhere in the chain; `None` if unknown.
pub fn classify_engine_error(error: &anyhow::Error) -> Option<(i32, String)> {
    for cause in error.chain() {
        if let Some(repo_error) = cause.downcast_ref::<RepoError>() {
            match repo_error {
                RepoError::WrongPassword => {
                    return Some((exit_code::WRONG_PASSWORD, WRONG_PASSWORD_TEXT.to_string()))
                }
                RepoError::NotFound { path, location } => {
                    let e = missing_repository(path, location);
                    return Some((e.code, e.message));
                }
                RepoError::Lock(LockError::Locked { .. }) => {
                    return Some((exit_code::LOCKED, format!("{repo_error}\n{UNLOCK_HINT}")))
                }
                _ => {}
            }
        }
        if let Some(locked @ LockError::Locked { .. }) = cause.downcast_ref::<LockError>() {
            return Some((exit_code::LOCKED, format!("{locked}\n{UNLOCK_HINT}")));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_text_and_code() {
        let e: anyhow::Error = fatal("boom").into();
        assert_eq!(classify(&e), (1, "Fatal: boom".to_string()));
        let e: anyhow::Error =
            CliError::plain(exit_code::WRONG_PASSWORD, WRONG_PASSWORD_TEXT).into();
        assert_eq!(classify(&e), (12, WRONG_PASSWORD_TEXT.to_string()));
        let e = anyhow::Error::from(CliError::plain(10, "missing")).context("while opening");
        assert_eq!(classify(&e).0, 10);
        let e = anyhow::anyhow!("something else");
        assert_eq!(classify(&e), (1, "something else".to_string()));
    }

    #[test]
    fn causes_are_printed_once() {
        #[derive(Debug)]
        struct Create {
            path: String,
            source: std::io::Error,
        }
        impl fmt::Display for Create {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "create {}: {}", self.path, self.source)
            }
        }
        impl std::error::Error for Create {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let io = std::io::Error::other("operation not permitted");
        let e = anyhow::Error::from(Create {
            path: "/x".into(),
            source: io,
        })
        .context("create /x: operation not permitted");
        assert_eq!(render(&e), "create /x: operation not permitted");
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(render(&e), "outer: inner");
    }

    #[test]
    fn exit_error_shape() {
        assert_eq!(
            exit_error_json(12, WRONG_PASSWORD_TEXT),
            r#"{"message_type":"exit_error","code":12,"message":"Fatal: wrong password or no key found"}"#
        );
        assert_eq!(
            exit_error_json(11, "a <b> & c"),
            r#"{"message_type":"exit_error","code":11,"message":"a \u003cb\u003e \u0026 c"}"#
        );
    }
}

//! Exit status and text for errors of `restix-engine` (spec: cli §8).

use restix_engine::repository::{LockError, RepoError};

use crate::errors::{exit_code, fatal, CliError, UNLOCK_HINT, WRONG_PASSWORD_TEXT};

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

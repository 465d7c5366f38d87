//! `init` (spec: cli §10.1).

use restix_engine::repository::{RepoError, Repository};
use restix_repo_format::ScryptParams;
use serde::Serialize;

use crate::args::InitArgs;
use crate::context::Context;
use crate::engine_glue::{open_location, read_password};
use crate::errors::fatal;
use crate::options::{PasswordSource, ProcessEnv};
use crate::secondary_repo::{any_given, open_secondary};

#[derive(Serialize)]
struct InitializedJson<'a> {
    message_type: &'static str,
    id: &'a str,
    repository: &'a str,
}

/// `--repository-version`: `stable`/`latest` (= 2) or a number.
fn repository_version(text: &str) -> anyhow::Result<u32> {
    match text {
        "stable" | "latest" => Ok(2),
        number => {
            let version: u32 = number
                .parse()
                .map_err(|_| fatal("invalid repository version"))?;
            if !(1..=2).contains(&version) {
                return Err(fatal("only repository versions between 1 and 2 are allowed").into());
            }
            Ok(version)
        }
    }
}

/// The new repository's password: given, or read (twice on a terminal).
fn new_password(ctx: &Context) -> anyhow::Result<String> {
    match ctx.password_source()? {
        PasswordSource::Given(p) => Ok(p),
        PasswordSource::Empty => Ok(String::new()),
        PasswordSource::NotGiven => {
            use std::io::IsTerminal;
            let first = read_password(ctx, "enter password for new repository: ")?;
            if std::io::stdin().is_terminal() {
                let second = read_password(ctx, "enter password again: ")?;
                if first != second {
                    return Err(fatal("passwords do not match").into());
                }
            }
            if first.is_empty() {
                return Err(fatal(
                    "an empty password is not allowed by default. Pass the flag `--insecure-no-password` to restic to disable this check",
                )
                .into());
            }
            Ok(first)
        }
    }
}

pub fn run(ctx: &Context, args: &InitArgs) -> anyhow::Result<()> {
    if !args.args.is_empty() {
        return Err(fatal(
            "the init command expects no arguments, only options - please see `restic help init` for usage and flags",
        )
        .into());
    }
    let version = repository_version(&args.repository_version)?;
    // restic maybeReadChunkerPolynomial: the second repository is opened
    // only to read its chunker polynomial.
    let polynomial = if args.copy_chunker_params {
        let secondary = open_secondary(
            &ctx.global,
            &ctx.extended,
            &args.secondary,
            "secondary",
            &ProcessEnv,
            &|prompt| read_password(ctx, prompt),
        )?;
        Some(secondary.repo.config().chunker_polynomial)
    } else {
        if any_given(&args.secondary, &ProcessEnv) {
            return Err(fatal(
                "Secondary repository must only be specified when copying the chunker parameters",
            )
            .into());
        }
        None
    };
    let (location, backend) = open_location(ctx)?;
    let password = new_password(ctx)?;
    let repo = Repository::init(
        backend,
        password.as_bytes(),
        version,
        polynomial,
        ScryptParams::default(),
    )
    .map_err(|e| match e {
        RepoError::AlreadyExists { .. } => fatal(format!(
            "create repository at {location} failed: config file already exists"
        )),
        other => fatal(format!("create repository at {location} failed: {other}")),
    })?;
    let id = repo.config().id.clone();
    // The first open reads the new key at once (cache_dirs::recall_key).
    if let Some(base) = crate::engine_glue::cache_dir(ctx) {
        crate::cache_dirs::remember_key(&base, &location, &id, &repo.key_id().to_hex());
    }
    if ctx.printer.json {
        ctx.printer.json_line(&InitializedJson {
            message_type: "initialized",
            id: &id,
            repository: &location,
        });
    } else {
        let short = id.get(..10).unwrap_or(&id);
        let copied = if polynomial.is_some() {
            " with chunker parameters copied from secondary repository"
        } else {
            ""
        };
        ctx.printer.print(&format!(
            "created restic repository {short} at {location}{copied}\n\n\
             Please note that knowledge of your password is required to access\n\
             the repository. Losing your password means that your data is\n\
             irrecoverably lost."
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(repository_version("stable").unwrap(), 2);
        assert_eq!(repository_version("1").unwrap(), 1);
        assert!(repository_version("3").is_err());
        assert!(repository_version("x").is_err());
    }
}

//! The second repository of `copy` and `init --copy-chunker-params`
//! (restic secondary_repo.go `fillSecondaryGlobalOpts`).
//!
//! Two groups of flags name it, each with its variables:
//!
//! | flag | variable | legacy flag | legacy variable |
//! | --- | --- | --- | --- |
//! | `--from-repo` | `RESTIC_FROM_REPOSITORY` | `--repo2` | `RESTIC_REPOSITORY2` |
//! | `--from-repository-file` | `RESTIC_FROM_REPOSITORY_FILE` | `--repository-file2` | `RESTIC_REPOSITORY_FILE2` |
//! | `--from-password-file` | `RESTIC_FROM_PASSWORD_FILE` | `--password-file2` | `RESTIC_PASSWORD_FILE2` |
//! | `--from-password-command` | `RESTIC_FROM_PASSWORD_COMMAND` | `--password-command2` | `RESTIC_PASSWORD_COMMAND2` |
//! | `--from-key-hint` | `RESTIC_FROM_KEY_HINT` | `--key-hint2` | `RESTIC_KEY_HINT2` |
//! | (password) | `RESTIC_FROM_PASSWORD` | | `RESTIC_PASSWORD2` |
//! | `--from-insecure-no-password` | | | |
//!
//! Only one group may be used. With the `--from-*` group the second
//! repository is the source of `copy`; with the legacy group it is the
//! destination (and `--repo` the source), as in restic.

use std::sync::Arc;

use restix_engine::repository::Repository;

use crate::args::{GlobalOptions, SecondaryRepoOptions};
use crate::errors::{fatal, map_open_error};
use crate::location::{open_backend_tls, tls_options};
use crate::options::{self, EnvLookup, ExtendedOptions, PasswordSource};

/// The opened second repository.
pub struct Secondary {
    pub repo: Arc<Repository>,
    /// Named with the `--from-*` group (else the legacy `--repo2` group).
    pub from_repo: bool,
}

/// Environment lookups of the second repository: the primary's names
/// mapped to the group's variables.
struct SecondaryEnv<'a> {
    from_repo: bool,
    env: &'a dyn EnvLookup,
}

impl EnvLookup for SecondaryEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        // Flags already carry their variables (see `resolved_flags`); only
        // the password itself still comes from the environment.
        match (name, self.from_repo) {
            ("RESTIC_PASSWORD", true) => self.env.var("RESTIC_FROM_PASSWORD"),
            ("RESTIC_PASSWORD", false) => self.env.var("RESTIC_PASSWORD2"),
            _ => None,
        }
    }
}

fn flag_or(flag: &Option<String>, env: &dyn EnvLookup, name: &str) -> Option<String> {
    flag.clone()
        .or_else(|| env.var(name))
        .filter(|v| !v.is_empty())
}

/// The second repository's settings as restic's flags hold them after
/// their variables filled the defaults: `(from group, legacy group)`.
fn resolved_flags(
    options: &SecondaryRepoOptions,
    env: &dyn EnvLookup,
) -> (GlobalOptions, GlobalOptions) {
    let from = GlobalOptions {
        repo: flag_or(&options.from_repo, env, "RESTIC_FROM_REPOSITORY"),
        repository_file: flag_or(
            &options.from_repository_file,
            env,
            "RESTIC_FROM_REPOSITORY_FILE",
        ),
        password_file: flag_or(
            &options.from_password_file,
            env,
            "RESTIC_FROM_PASSWORD_FILE",
        ),
        password_command: flag_or(
            &options.from_password_command,
            env,
            "RESTIC_FROM_PASSWORD_COMMAND",
        ),
        key_hint: flag_or(&options.from_key_hint, env, "RESTIC_FROM_KEY_HINT"),
        insecure_no_password: options.from_insecure_no_password,
        ..GlobalOptions::default()
    };
    let legacy = GlobalOptions {
        repo: flag_or(&options.repo2, env, "RESTIC_REPOSITORY2"),
        repository_file: flag_or(&options.repository_file2, env, "RESTIC_REPOSITORY_FILE2"),
        password_file: flag_or(&options.password_file2, env, "RESTIC_PASSWORD_FILE2"),
        password_command: flag_or(&options.password_command2, env, "RESTIC_PASSWORD_COMMAND2"),
        key_hint: flag_or(&options.key_hint2, env, "RESTIC_KEY_HINT2"),
        insecure_no_password: false,
        ..GlobalOptions::default()
    };
    (from, legacy)
}

/// Whether any flag of the second repository is given.
pub fn any_given(options: &SecondaryRepoOptions, env: &dyn EnvLookup) -> bool {
    let (from, legacy) = resolved_flags(options, env);
    from.repo.is_some()
        || from.repository_file.is_some()
        || legacy.repo.is_some()
        || legacy.repository_file.is_some()
}

/// Which group names the repository, its settings, and the word restic
/// uses in its password prompt; restic's errors for bad combinations.
fn choose(
    options: &SecondaryRepoOptions,
    env: &dyn EnvLookup,
) -> anyhow::Result<(bool, GlobalOptions)> {
    let (from, legacy) = resolved_flags(options, env);
    if from.repo.is_none()
        && from.repository_file.is_none()
        && legacy.repo.is_none()
        && legacy.repository_file.is_none()
    {
        return Err(fatal(
            "Please specify a source repository location (--from-repo or --from-repository-file)",
        )
        .into());
    }
    let has_from = from.repo.is_some()
        || from.repository_file.is_some()
        || from.password_file.is_some()
        || from.key_hint.is_some()
        || from.password_command.is_some()
        || from.insecure_no_password;
    let has_legacy = legacy.repo.is_some()
        || legacy.repository_file.is_some()
        || legacy.password_file.is_some()
        || legacy.key_hint.is_some()
        || legacy.password_command.is_some();
    if has_from && has_legacy {
        return Err(fatal(
            "Option groups repo2 and from-repo are mutually exclusive, please specify only one",
        )
        .into());
    }
    if has_from {
        if from.repo.is_some() && from.repository_file.is_some() {
            return Err(fatal("Options --from-repo and --from-repository-file are mutually exclusive, please specify only one").into());
        }
        Ok((true, from))
    } else {
        if legacy.repo.is_some() && legacy.repository_file.is_some() {
            return Err(fatal(
                "Options --repo2 and --repository-file2 are mutually exclusive, please specify only one",
            )
            .into());
        }
        Ok((false, legacy))
    }
}

/// Resolve and open the second repository (no lock taken). `prefix` is
/// the word of the password prompt for the legacy group (`destination`,
/// `secondary`); the `--from-*` group says `source`. `prompt` reads a
/// password from the terminal or stdin.
pub fn open_secondary(
    primary: &GlobalOptions,
    extended: &ExtendedOptions,
    options: &SecondaryRepoOptions,
    prefix: &str,
    env: &dyn EnvLookup,
    prompt: &dyn Fn(&str) -> anyhow::Result<String>,
) -> anyhow::Result<Secondary> {
    let (from_repo, flags) = choose(options, env)?;
    let secondary_env = SecondaryEnv { from_repo, env };
    let location = options::resolve_repository(&flags, &secondary_env)?;
    let prefix = if from_repo { "source" } else { prefix };
    let password = match options::resolve_password(&flags, &secondary_env)? {
        PasswordSource::Given(p) => p,
        PasswordSource::Empty => String::new(),
        PasswordSource::NotGiven => {
            let p = prompt(&format!("enter password for {prefix} repository: "))?;
            if p.is_empty() {
                return Err(fatal(
                    "an empty password is not allowed by default. Pass the flag `--insecure-no-password` to restic to disable this check",
                )
                .into());
            }
            p
        }
    };
    let backend = open_backend_tls(
        &location,
        extended,
        primary.limit_upload,
        primary.limit_download,
        &tls_options(primary),
    )?;
    let repo = Repository::open(backend, password.as_bytes(), flags.key_hint.as_deref())
        .map_err(|e| map_open_error(e, &location))?;
    Ok(Secondary {
        repo: Arc::new(repo),
        from_repo,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn groups_and_their_variables() {
        let none = SecondaryRepoOptions::default();
        assert_eq!(
            choose(&none, &env(&[])).unwrap_err().to_string(),
            "Fatal: Please specify a source repository location (--from-repo or --from-repository-file)"
        );
        let (from, flags) = choose(&none, &env(&[("RESTIC_FROM_REPOSITORY", "/src")])).unwrap();
        assert!(from);
        assert_eq!(flags.repo.as_deref(), Some("/src"));
        let (from, flags) = choose(
            &none,
            &env(&[
                ("RESTIC_REPOSITORY2", "/dst"),
                ("RESTIC_PASSWORD_FILE2", "/pw"),
            ]),
        )
        .unwrap();
        assert!(!from);
        assert_eq!(flags.repo.as_deref(), Some("/dst"));
        assert_eq!(flags.password_file.as_deref(), Some("/pw"));
        let both = SecondaryRepoOptions {
            from_repo: Some("/a".into()),
            repo2: Some("/b".into()),
            ..Default::default()
        };
        assert_eq!(
            choose(&both, &env(&[])).unwrap_err().to_string(),
            "Fatal: Option groups repo2 and from-repo are mutually exclusive, please specify only one"
        );
        let insecure = SecondaryRepoOptions {
            repo2: Some("/b".into()),
            from_insecure_no_password: true,
            ..Default::default()
        };
        assert!(choose(&insecure, &env(&[])).is_err());
        let secondary = SecondaryEnv {
            from_repo: true,
            env: &env(&[
                ("RESTIC_PASSWORD", "primary"),
                ("RESTIC_FROM_PASSWORD", "src"),
            ]),
        };
        assert_eq!(secondary.var("RESTIC_PASSWORD").as_deref(), Some("src"));
        assert_eq!(secondary.var("RESTIC_PASSWORD_FILE"), None);
    }
}

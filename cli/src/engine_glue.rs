//! The seam between the CLI and `restix-engine`: opening repositories with
//! restic's password/location algorithm (spec: cli §4; the backend and its
//! wrappers, bandwidth limits included, come from `location`), locking (§7)
//! and lock cleanup on signals.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;
use std::time::Duration;

use restix_engine::backend::prefetch::{repository_open_plan, Prefetching};
use restix_engine::backend::{Backend, BackendError, FileType};
use restix_engine::repository::{LockGuard, Repository};
use restix_repo_format::{Id, Snapshot};

use crate::context::Context;
use crate::errors::{fatal, map_lock_error, map_open_error, CliError};
use crate::location::{open_backend_tls, tls_options};
use crate::options::{self, PasswordSource, ProcessEnv};

/// The lock a command takes (spec: cli §7 table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// No lock at all (`unlock`, `list locks`, ...).
    None,
    /// Non-exclusive; skipped with `--no-lock`.
    Shared,
    /// Non-exclusive even with `--no-lock` (`backup`).
    SharedAlways,
    /// Exclusive; skipped with `--no-lock`.
    Exclusive,
}

/// An open repository and the lock held for the command.
pub struct OpenedRepository {
    pub repo: Arc<Repository>,
    /// The location as given (`-r`), for messages.
    #[allow(dead_code)]
    pub location: String,
    lock: Option<LockGuard>,
}

/// Snapshots with their IDs.
pub type SnapshotList = Vec<(Id, Snapshot)>;

impl OpenedRepository {
    /// All snapshots that load. A damaged snapshot file (empty,
    /// truncated, undecodable) is reported on stderr as restic 0.18's
    /// `FindFilteredSnapshots` does (`Ignoring "ID": ...`) and passed over.
    pub fn list_snapshots(&self) -> anyhow::Result<Vec<(Id, Snapshot)>> {
        Ok(self.list_snapshots_and_damaged()?.0)
    }

    /// [`Self::list_snapshots`] and the IDs of the damaged snapshot files
    /// (`forget ID` and `repair snapshots --forget` remove those).
    pub fn list_snapshots_and_damaged(&self) -> anyhow::Result<(SnapshotList, Vec<Id>)> {
        let listing = self.repo.list_snapshots_lenient()?;
        let mut damaged = Vec::with_capacity(listing.damaged.len());
        for (id, error) in listing.damaged {
            let reason = match &error {
                // restic's LoadRaw check of the content's hash.
                restix_engine::repository::RepoError::InvalidFile { reason, .. }
                    if reason.starts_with("invalid data") =>
                {
                    format!(
                        "LoadRaw(<snapshot/{}>): invalid data returned",
                        id.to_hex().get(..10).unwrap_or_default()
                    )
                }
                other => other.to_string(),
            };
            crate::output::write_stderr_line(&format!(
                "Ignoring {:?}: failed to load snapshot {}: {reason}",
                id.to_hex(),
                id.short()
            ));
            damaged.push(id);
        }
        Ok((listing.snapshots, damaged))
    }

    /// Load the index (needed before reading blobs).
    pub fn load_index(&self) -> anyhow::Result<()> {
        Ok(self.repo.load_index()?)
    }

    /// Load the index through the local index cache, for commands that
    /// trust the index (backup, restore, dump, ls, diff; never check):
    /// index files the cache covers are not parsed again. `--no-cache`
    /// turns it off.
    pub fn load_index_cached(&self, ctx: &Context) -> anyhow::Result<()> {
        if let Some(dir) = cache_dir(ctx) {
            self.repo.use_index_cache(
                dir.join("restix-index")
                    .join(format!("{}.index", self.repo.config().id)),
            );
        }
        self.load_index()
    }

    /// Release the lock now, reporting errors (dropping also releases it).
    pub fn unlock(&mut self) {
        if let Some(lock) = self.lock.take() {
            let _ = lock.release();
        }
    }
}

impl Drop for OpenedRepository {
    fn drop(&mut self) {
        self.unlock();
    }
}

/// Resolve the repository location and open its backend.
pub fn open_location(ctx: &Context) -> anyhow::Result<(String, Arc<dyn Backend>)> {
    let location = options::resolve_repository(&ctx.global, &ProcessEnv)?;
    let backend = open_backend_tls(
        &location,
        &ctx.extended,
        ctx.global.limit_upload,
        ctx.global.limit_download,
        &tls_options(&ctx.global),
    )?;
    Ok((location, backend))
}

/// Stat `config` like restic does before asking for a password (spec: cli §8.2).
fn check_config_exists(backend: &dyn Backend, location: &str) -> Result<(), CliError> {
    match backend.stat(FileType::Config, "config") {
        Ok(info) if info.size == 0 => Err(fatal("config file has zero size, invalid repository?")),
        Ok(_) => Ok(()),
        Err(BackendError::NotFound { path }) => Err(crate::errors::missing_repository(&path, location)),
        Err(e) => Err(fatal(format!("unable to open config file: {e}\nIs there a repository at the following location?\n{location}"))),
    }
}

/// Open the repository of `--repo` with the resolved password, apply
/// compression and pack size, and take the command's lock.
pub fn open_repository(ctx: &Context, lock_mode: LockMode) -> anyhow::Result<OpenedRepository> {
    open_repository_with(ctx, lock_mode, false)
}

/// Like [`open_repository`]; `stdin_is_data` refuses to read the password
/// from stdin (`backup --stdin`).
pub fn open_repository_with(
    ctx: &Context,
    lock_mode: LockMode,
    stdin_is_data: bool,
) -> anyhow::Result<OpenedRepository> {
    open_repository_impl(ctx, lock_mode, stdin_is_data, false)
}

/// Like [`open_repository`]; with `dry_run` no lock is taken and nothing
/// is written or removed (restic `openWith...Lock(..., dryRun)` and
/// `SetDryRun`: `backup`, `rewrite`, `repair snapshots` `--dry-run`).
pub fn open_repository_dry_run(
    ctx: &Context,
    lock_mode: LockMode,
    dry_run: bool,
) -> anyhow::Result<OpenedRepository> {
    open_repository_impl(ctx, lock_mode, false, dry_run)
}

/// The general form: lock mode, whether stdin carries data (then the
/// password is not read from it), and dry run.
pub fn open_repository_impl(
    ctx: &Context,
    lock_mode: LockMode,
    stdin_is_data: bool,
    dry_run: bool,
) -> anyhow::Result<OpenedRepository> {
    let lock_mode = if dry_run { LockMode::None } else { lock_mode };
    let password_source = ctx.password_source()?;
    let (location, backend) = open_location(ctx)?;
    let backend: Arc<dyn Backend> = if dry_run {
        Arc::new(restix_engine::dry_run::DryRunBackend::new(backend))
    } else {
        backend
    };
    // The config, keys, locks, snapshots and index are asked for one after
    // another below; start them all now (issue #20: each is a round trip or
    // two on a long link). backend/src/prefetch.rs says why this is safe.
    let takes_lock = match lock_mode {
        LockMode::None => false,
        LockMode::Shared | LockMode::Exclusive => !ctx.global.no_lock,
        LockMode::SharedAlways => true,
    };
    // The key to try first is read at once too: `--key-hint` when it names
    // a whole key ID, else the key that opened this repository last time
    // (cache_dirs::recall_key); a dry run leaves the cache folder alone.
    let cache_base = cache_dir(ctx).filter(|_| !dry_run);
    let key_hint = ctx
        .global
        .key_hint
        .clone()
        .or_else(|| std::env::var("RESTIC_KEY_HINT").ok())
        .filter(|h| !h.is_empty())
        .or_else(|| {
            cache_base
                .as_deref()
                .and_then(|base| crate::cache_dirs::recall_key(base, &location))
        });
    let mut plan = repository_open_plan(takes_lock);
    if let Some(key) = &key_hint {
        plan = plan.with_key_read(key);
    }
    let backend: Arc<dyn Backend> = Arc::new(Prefetching::start(backend, plan));
    check_config_exists(backend.as_ref(), &location)?;
    let password = match password_source {
        PasswordSource::Given(p) => p,
        PasswordSource::Empty => String::new(),
        PasswordSource::NotGiven => {
            if stdin_is_data {
                return Err(fatal("cannot read both password and data from stdin").into());
            }
            let p = read_password(ctx, "enter password for repository: ")?;
            if p.is_empty() {
                return Err(fatal(
                    "an empty password is not allowed by default. Pass the flag `--insecure-no-password` to restic to disable this check",
                )
                .into());
            }
            p
        }
    };
    let repo = Repository::open(backend, password.as_bytes(), key_hint.as_deref())
        .map_err(|e| map_open_error(e, &location))?;
    if let Some(base) = &cache_base {
        crate::cache_dirs::remember_key(
            base,
            &location,
            &repo.config().id,
            &repo.key_id().to_hex(),
        );
    }
    let compression = ctx.apply_write_settings(&repo)?;
    repo.set_cpu_threads(ctx.threads);
    let id = repo.config().id.get(..8).unwrap_or_default().to_string();
    if repo.version() >= 2 {
        ctx.printer.print_terminal(&format!(
            "repository {id} opened (version {}, compression level {})",
            repo.version(),
            compression.as_str()
        ));
    } else {
        ctx.printer.print_terminal(&format!(
            "repository {id} opened (version {})",
            repo.version()
        ));
    }
    crate::cache_dirs::after_open(
        cache_dir(ctx).as_deref(),
        &repo.config().id,
        ctx.global.cleanup_cache,
        &ctx.printer,
    );
    // Tree packs in restic's cache folder (issue #20); a dry run keeps
    // them in memory (restic's dry-run backend bypasses its cache too).
    if let Some(base) = cache_dir(ctx).filter(|_| !dry_run) {
        if let Err(e) = repo.use_tree_pack_cache(&base) {
            ctx.printer.error(&format!("unable to open cache: {e}"));
        }
    }
    let repo = Arc::new(repo);
    let lock = match lock_mode {
        LockMode::None => None,
        LockMode::Shared | LockMode::Exclusive if ctx.global.no_lock => None,
        LockMode::Shared | LockMode::SharedAlways | LockMode::Exclusive => {
            let retry = retry_lock_duration(ctx)?;
            if retry.is_some() && !ctx.printer.json {
                // restic prints this only when it actually has to wait; we
                // cannot know in advance, so we stay silent.
            }
            Some(
                repo.lock_with_retry(lock_mode == LockMode::Exclusive, retry)
                    .map_err(map_lock_error)?,
            )
        }
    };
    Ok(OpenedRepository {
        repo,
        location,
        lock,
    })
}

/// `--retry-lock` as a duration (Go `time.ParseDuration` syntax).
fn retry_lock_duration(ctx: &Context) -> anyhow::Result<Option<Duration>> {
    let Some(text) = ctx.global.retry_lock.as_deref() else {
        return Ok(None);
    };
    let d = parse_go_duration(text).ok_or_else(|| {
        CliError::plain(1, format!("invalid argument \"{text}\" for \"--retry-lock\" flag: time: invalid duration \"{text}\""))
    })?;
    Ok((!d.is_zero()).then_some(d))
}

/// Go durations have one home: [`crate::options::parse_go_duration`].
pub use crate::options::parse_go_duration;

/// Read a password: prompt on the terminal with echo off, else one line of stdin.
pub fn read_password(ctx: &Context, prompt: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(read_password_from_terminal(prompt)?);
    }
    ctx.printer
        .print_terminal("reading repository password from stdin");
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// restic's prompt (`term.ReadPassword` on stdin): the prompt on stderr,
/// the line read from the terminal on stdin with echo off, then a newline
/// on stderr. The `rpassword` crate does the terminal work.
fn read_password_from_terminal(prompt: &str) -> std::io::Result<String> {
    let config = rpassword::ConfigBuilder::new()
        .input_file_path("/dev/stdin")
        .output_writer(std::io::stderr())
        .password_feedback_hide()
        .build();
    rpassword::prompt_password_with_config(prompt, config)
}

/// The local cache folder (`--cache-dir`, `RESTIC_CACHE_DIR`,
/// `$XDG_CACHE_HOME/restic`, `~/.cache/restic`, as restic); `None` with
/// `--no-cache`.
pub fn cache_dir(ctx: &Context) -> Option<std::path::PathBuf> {
    if ctx.global.no_cache {
        return None;
    }
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    ctx.global
        .cache_dir
        .as_ref()
        .map(std::path::PathBuf::from)
        .or_else(|| env("RESTIC_CACHE_DIR").map(std::path::PathBuf::from))
        .or_else(|| env("XDG_CACHE_HOME").map(|d| std::path::PathBuf::from(d).join("restic")))
        .or_else(|| env("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/restic")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("5x"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}

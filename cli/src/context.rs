//! The context every command receives: the global options resolved once
//! (spec: cli §4 step 1): transport settings for the backends, verbosity
//! and output mode (the [`Printer`], which also carries the progress rate),
//! `-o` extended options and worker threads.
//!
//! It sits below every command and imports none: commands take a
//! `&Context`, and [`crate::engine_glue`] opens the repository from it.

use restix_engine::repository::Repository;
use restix_repo_format::CompressionMode;

use crate::args::GlobalOptions;
use crate::errors::{fatal, CliError};
use crate::options::{self, ExtendedOptions, PasswordSource, ProcessEnv};
use crate::output::Printer;

/// Everything a command needs from the global flags.
pub struct Context {
    pub global: GlobalOptions,
    pub printer: Printer,
    pub extended: ExtendedOptions,
    pub threads: usize,
}

impl Context {
    /// Validate the global flags (spec: cli §4 step 1).
    pub fn new(mut global: GlobalOptions) -> anyhow::Result<Context> {
        // --cacert lists, $RESTIC_CACERT, $RESTIC_TLS_CLIENT_CERT,
        // $RESTIC_HTTP_USER_AGENT and --stuck-request-timeout, resolved
        // once for the backends (restic global.go).
        options::resolve_transport(&mut global, &ProcessEnv)?;
        let verbosity = options::verbosity(&global)?;
        let extended = options::parse_extended_options(&global.option)?;
        let threads = options::worker_threads(&global, &ProcessEnv);
        let printer = Printer::new(verbosity, global.json);
        Ok(Context {
            global,
            printer,
            extended,
            threads,
        })
    }
}

/// Global options read when a command needs them, not up front: restic
/// reads these when it opens a repository, so a command that opens none
/// (`version`, `generate`) is not refused for a bad value.
impl Context {
    /// The password's source: `--password-file`, `--password-command`,
    /// `RESTIC_PASSWORD*`, or none (spec: cli §4).
    pub fn password_source(&self) -> Result<PasswordSource, CliError> {
        options::resolve_password(&self.global, &ProcessEnv)
    }

    /// `--compression` or `$RESTIC_COMPRESSION` (default `auto`).
    pub fn compression_mode(&self) -> Result<String, CliError> {
        options::compression_mode(&self.global, &ProcessEnv)
    }

    /// `--pack-size` or `$RESTIC_PACK_SIZE` in bytes, if given.
    pub fn pack_size_bytes(&self) -> Result<Option<u64>, CliError> {
        options::pack_size_bytes(&self.global, &ProcessEnv)
    }

    /// Apply the compression and pack size to a repository the command
    /// writes to (the one opened, or `copy`'s destination); returns the
    /// compression applied.
    pub fn apply_write_settings(&self, repo: &Repository) -> anyhow::Result<CompressionMode> {
        let compression: CompressionMode = self
            .compression_mode()?
            .parse()
            .map_err(|e| fatal(format!("{e}")))?;
        repo.set_compression(compression);
        if let Some(bytes) = self.pack_size_bytes()? {
            repo.set_pack_size(bytes).map_err(fatal)?;
        }
        Ok(compression)
    }
}

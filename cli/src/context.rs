//! The context every command receives: the global options resolved once
//! (spec: cli §4 step 1): transport settings for the backends, verbosity
//! and output mode (the [`Printer`], which also carries the progress rate),
//! `-o` extended options and worker threads.
//!
//! It sits below every command and imports none: commands take a
//! `&Context`, and [`crate::engine_glue`] opens the repository from it.

use crate::args::GlobalOptions;
use crate::options::{self, ExtendedOptions, ProcessEnv};
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

//! One module per command; [`dispatch`] runs the parsed command line.

mod version;

use crate::args::{Cli, Command, GlobalOptions};
use crate::errors::{exit_code, not_implemented};
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
    fn new(global: GlobalOptions) -> anyhow::Result<Context> {
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

/// Run the command; returns the exit status on success paths.
pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return Ok(exit_code::SUCCESS);
    };
    let ctx = Context::new(cli.global)?;
    match command {
        Command::Version(_) => version::run(&ctx)?,
        other => return Err(not_implemented(&format!("the {} command", other.name()))),
    }
    Ok(exit_code::SUCCESS)
}

//! `generate` (spec: cli §10.21): shell completions and man pages, built
//! from the same clap definition that parses the command line, so they
//! always list the flags restix really has. No repository, no password.
//!
//! Names follow the program name as invoked (`restic` when restix is
//! installed as the drop-in `restic`): completions register for that
//! name, man pages are `<name>.1` and `<name>-<command>.1` (restic's
//! `restic-backup.1` layout).

use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::{Cli, GenerateArgs};
use crate::context::Context;
use crate::errors::fatal;

/// The program name completions and man pages are made for: `restic`
/// when restix runs as the drop-in `restic`, else `restix`.
fn program_name() -> &'static str {
    let invoked = std::env::args_os()
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|n| n.to_os_string()));
    match invoked {
        Some(n) if n == "restic" => "restic",
        _ => "restix",
    }
}

/// The clap command tree, named `name`.
fn command_tree(name: &'static str) -> clap::Command {
    let mut cmd = Cli::command()
        .name(name)
        .bin_name(name)
        .disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// Write `bytes` to `target`, or to stdout for `-` (0.18).
fn write_output(target: &str, bytes: &[u8]) -> anyhow::Result<()> {
    if target == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()?;
        return Ok(());
    }
    std::fs::write(target, bytes).map_err(|e| fatal(format!("{target}: {e}")))?;
    Ok(())
}

fn completion(name: &'static str, shell: Shell) -> Vec<u8> {
    let mut cmd = command_tree(name);
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// Write the root page and one page per command into `dir`, named like
/// restic's: `restic.1`, `restic-backup.1`, ... with cobra's sections
/// (see [`crate::help::man_pages`]).
fn write_man_pages(name: &'static str, dir: &Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        return Err(fatal(format!("{}: not a directory", dir.display())).into());
    }
    for (file, page) in crate::help::man_pages(&crate::args::command_tree(name), name) {
        let path = dir.join(file);
        std::fs::write(&path, page).map_err(|e| fatal(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

pub fn run(ctx: &Context, args: &GenerateArgs) -> anyhow::Result<()> {
    if !args.args.is_empty() {
        return Err(fatal("the generate command expects no arguments, only options - please see `restic help generate` for usage and flags").into());
    }
    let name = program_name();
    let shells = [
        ("bash", &args.bash_completion, Shell::Bash),
        ("fish", &args.fish_completion, Shell::Fish),
        ("zsh", &args.zsh_completion, Shell::Zsh),
        ("powershell", &args.powershell_completion, Shell::PowerShell),
    ];
    let nothing = args.man.is_none() && shells.iter().all(|(_, target, _)| target.is_none());
    if nothing {
        return Err(fatal("nothing to do, please specify at least one output file/dir").into());
    }
    if let Some(dir) = &args.man {
        ctx.printer
            .print(&format!("writing man pages to directory {dir}"));
        write_man_pages(name, Path::new(dir))?;
    }
    for (label, target, shell) in shells {
        let Some(target) = target else {
            continue;
        };
        if target != "-" {
            ctx.printer
                .print(&format!("writing {label} completion file to {target}"));
        }
        write_output(target, &completion(name, shell))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn completions_name_the_commands() {
        for shell in [Shell::Bash, Shell::Fish, Shell::Zsh, Shell::PowerShell] {
            let text = String::from_utf8(completion("restic", shell)).unwrap();
            assert!(text.contains("backup"), "{shell:?}");
            assert!(text.contains("restic"), "{shell:?}");
        }
    }

    #[test]
    fn man_pages_one_per_command() {
        let dir = std::env::temp_dir().join(format!("restix-man-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        write_man_pages("restic", &dir).unwrap();
        let page = fs::read_to_string(dir.join("restic-backup.1")).unwrap();
        let root_page = dir.join("restic.1").is_file();
        let prune_page = dir.join("restic-prune.1").is_file();
        fs::remove_dir_all(&dir).unwrap();
        assert!(page.contains(".TH"), "{page}");
        assert!(page.contains("exclude"), "{page}");
        assert!(root_page && prune_page);
    }
}

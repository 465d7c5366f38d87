//! `self-update`: restic's release builds download their newest release
//! here; distribution builds have no such command. restix does not replace
//! its own binary either: it checks `--output` as restic does, then ends
//! with exit status 1 and says how to update instead.

use std::path::Path;

use crate::args::SelfUpdateArgs;
use crate::context::Context;
use crate::errors::fatal;

pub fn run(ctx: &Context, args: &SelfUpdateArgs) -> anyhow::Result<()> {
    let output = match &args.output {
        Some(output) => output.clone(),
        None => std::env::current_exe()
            .map_err(|e| fatal(format!("unable to find executable: {e}")))?
            .to_string_lossy()
            .into_owned(),
    };
    match std::fs::symlink_metadata(&output) {
        Ok(meta) if !meta.is_file() => {
            return Err(fatal(format!(
                "output path {output} is not a normal file, use --output to specify a different file path"
            ))
            .into())
        }
        Ok(_) => {}
        Err(_) => {
            let dir = Path::new(&output)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            match std::fs::symlink_metadata(dir) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(fatal(format!(
                        "output parent path {} is not a directory, use --output to specify a different file path",
                        dir.display()
                    ))
                    .into())
                }
                Err(e) => return Err(fatal(format!("{}: {e}", dir.display())).into()),
            }
        }
    }
    ctx.printer.verbose(&format!("writing restic to {output}"));
    Err(fatal(
        "unable to update restic: self-update is not available in this build of restix; install the new release the way this one was installed (see docs/install.md)",
    )
    .into())
}

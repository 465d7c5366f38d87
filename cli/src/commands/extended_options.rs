//! `options`: the extended options (`-o key=value`) restix understands,
//! in restic's layout (cmd_options.go): `All Extended Options:`, then one
//! line per option, names padded to the longest.
//!
//! The list is what the backends of the registry (`cli/src/location.rs`)
//! accept: each factory's scheme and option names.

use crate::args::PositionalArgs;
use crate::context::Context;

/// What an option does, in restix.
fn describe(name: &str) -> &'static str {
    match name {
        "local.connections" => "set a limit for the number of concurrent operations (default: 2)",
        "local.layout" => "accepted for compatibility and ignored (restix uses the default layout)",
        "sftp.args" => "specify arguments for ssh",
        "sftp.command" => "specify command to create sftp connection",
        "sftp.connections" => "set a limit for the number of concurrent connections (default: 5)",
        "s3.bucket-lookup" => "bucket lookup style: 'auto', 'dns', or 'path'",
        "s3.connections" => "set a limit for the number of concurrent connections (default: 5)",
        "s3.layout" => "accepted for compatibility and ignored (restix uses the default layout)",
        "s3.list-objects-v1" => "accepted for compatibility and ignored (restix lists with ListObjectsV2)",
        "s3.region" => "set region",
        "s3.retries" => "set how often a failed request is retried",
        "s3.storage-class" => "set S3 storage class (STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING or REDUCED_REDUNDANCY)",
        "s3.unsafe-anonymous-auth" => "use anonymous authentication",
        "rest.connections" => "set a limit for the number of concurrent connections (default: 5)",
        "rclone.args" => "arguments for running rclone (default: serve restic --stdio --b2-hard-delete)",
        "rclone.connections" => "set a limit for the number of concurrent connections (default: 5)",
        "rclone.program" => "path to rclone (default: rclone)",
        "rclone.timeout" => "set a timeout limit to wait for rclone to establish a connection (default: 1m)",
        "azure.access-tier" => "set the access tier for the blob storage (default: inferred from the storage account defaults)",
        "azure.connections" => "set a limit for the number of concurrent connections (default: 5)",
        "azure.endpoint" => "service URL instead of https://<account>.blob.<suffix> (restix; Azurite, private endpoints)",
        _ => "",
    }
}

/// Every option name restix accepts, sorted.
pub fn option_names() -> Vec<String> {
    let registry = crate::location::registry();
    let mut names: Vec<String> = Vec::new();
    for scheme in registry.schemes() {
        if let Some(factory) = registry.lookup(scheme) {
            names.extend(
                factory
                    .option_names()
                    .iter()
                    .map(|n| format!("{scheme}.{n}")),
            );
        }
    }
    names.sort();
    names
}

/// The listing as printed.
pub fn listing() -> String {
    let names = option_names();
    let width = names.iter().map(String::len).max().unwrap_or(0);
    let mut out = String::from("All Extended Options:\n");
    for name in &names {
        out.push_str(&format!("  {name:<width$}  {}\n", describe(name)));
    }
    out
}

pub fn run(ctx: &Context, _args: &PositionalArgs) -> anyhow::Result<()> {
    ctx.printer.important(&listing());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_option_is_described() {
        let text = listing();
        assert!(text.starts_with("All Extended Options:\n  azure.access-tier "));
        for name in ["rest.connections", "rclone.program", "rclone.timeout"] {
            assert!(text.contains(name), "{name}");
        }
        for name in option_names() {
            assert!(!describe(&name).is_empty(), "{name} has no description");
        }
    }
}

//! `version` (spec: cli §10.20): no repository, no password.

use serde::Serialize;

use crate::context::Context;

/// restic's Go architecture names.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

#[derive(Serialize)]
struct VersionJson<'a> {
    message_type: &'static str,
    version: &'a str,
    go_version: String,
    go_os: &'static str,
    go_arch: &'static str,
}

pub fn run(ctx: &Context) -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    let rustc = env!("RESTIX_RUSTC_VERSION");
    if ctx.printer.json {
        ctx.printer.json_line(&VersionJson {
            message_type: "version",
            version,
            go_version: format!("rustc {rustc}"),
            go_os: std::env::consts::OS,
            go_arch: go_arch(),
        });
    } else {
        ctx.printer.important(&format!(
            "restix {version} (restic 0.18 compatible) compiled with rustc {rustc} on {}/{}",
            std::env::consts::OS,
            go_arch()
        ));
    }
    Ok(())
}

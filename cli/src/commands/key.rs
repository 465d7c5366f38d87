//! `key list|add|remove|passwd` (spec: cli §10.13, JSON §11.8).

use std::io::IsTerminal;

use restix_engine::keys::{add_key, find_key, list_keys, remove_key, KeyError};
use restix_repo_format::{GoTime, ScryptParams};
use serde::Serialize;

use crate::args::{KeyAddArgs, KeyArgs, KeyCommand};
use crate::context::Context;
use crate::engine_glue::{open_repository, read_password, LockMode, OpenedRepository};
use crate::errors::{fatal, CliError};
use crate::options::decode_text_file;
use crate::output::Table;
use crate::timefmt::{go_time_string, local_time_text};

#[derive(Serialize)]
struct KeyJson {
    current: bool,
    id: String,
    #[serde(rename = "userName")]
    user_name: String,
    #[serde(rename = "hostName")]
    host_name: String,
    created: String,
}

fn key_error(e: KeyError) -> anyhow::Error {
    match e {
        KeyError::CurrentKey => fatal(e.to_string()).into(),
        other => fatal(other.to_string()).into(),
    }
}

/// The current user's name (`$USER`, else the passwd entry's uid as text).
fn local_username() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            if uid == 0 {
                "root".to_string()
            } else {
                uid.to_string()
            }
        })
}

fn new_password(ctx: &Context, args: &KeyAddArgs) -> anyhow::Result<String> {
    if args.new_insecure_no_password {
        if args.new_password_file.is_some() {
            return Err(fatal(
                "only either --new-password-file or --new-insecure-no-password may be specified",
            )
            .into());
        }
        return Ok(String::new());
    }
    if let Some(file) = &args.new_password_file {
        let bytes = std::fs::read(file).map_err(|e| fatal(format!("Load key failed: {e}")))?;
        let text = decode_text_file(&bytes);
        let password = text.trim().to_string();
        if password.is_empty() {
            return Err(fatal("an empty password is not allowed by default. Pass the flag `--new-insecure-no-password` to restic to disable this check").into());
        }
        return Ok(password);
    }
    let first = read_password(ctx, "enter new password: ")?;
    // spec: cli §4 step 6: a terminal is asked twice, piped stdin read once.
    if std::io::stdin().is_terminal() {
        let second = read_password(ctx, "enter password again: ")?;
        if first != second {
            return Err(fatal("passwords do not match").into());
        }
    }
    if first.is_empty() {
        return Err(fatal("an empty password is not allowed by default. Pass the flag `--new-insecure-no-password` to restic to disable this check").into());
    }
    Ok(first)
}

fn store_new_key(
    ctx: &Context,
    opened: &OpenedRepository,
    args: &KeyAddArgs,
) -> anyhow::Result<(restix_repo_format::Id, String, String, GoTime)> {
    let password = new_password(ctx, args)?;
    let user = args.user.clone().unwrap_or_else(local_username);
    let host = args
        .host
        .clone()
        .unwrap_or_else(restix_engine::repository::hostname);
    let created = GoTime::now_local();
    let id = add_key(
        &opened.repo,
        password.as_bytes(),
        &user,
        &host,
        created,
        ScryptParams::default(),
    )
    .map_err(key_error)?;
    Ok((id, user, host, created))
}

pub fn run(ctx: &Context, args: &KeyArgs) -> anyhow::Result<()> {
    match &args.command {
        KeyCommand::List(list) => {
            if !list.args.is_empty() {
                return Err(CliError::plain(1, "the key list command expects no arguments, only options - please see `restic help key list` for usage and flags").into());
            }
            let mut opened = open_repository(ctx, LockMode::Shared)?;
            let keys = list_keys(&opened.repo).map_err(key_error)?;
            let current = *opened.repo.key_id();
            opened.unlock();
            if ctx.printer.json {
                let items: Vec<KeyJson> = keys
                    .iter()
                    .map(|(id, k)| KeyJson {
                        current: *id == current,
                        id: id.to_hex(),
                        user_name: k.username.clone(),
                        host_name: k.hostname.clone(),
                        created: local_time_text(k.created),
                    })
                    .collect();
                ctx.printer.json_line(&items);
                return Ok(());
            }
            let mut table = Table::new(&[" ID", "User", "Host", "Created"]);
            for (id, k) in &keys {
                let mark = if *id == current { "*" } else { " " };
                table.add_row(vec![
                    vec![format!("{mark}{}", id.short())],
                    vec![k.username.clone()],
                    vec![k.hostname.clone()],
                    vec![local_time_text(k.created)],
                ]);
            }
            ctx.printer.important(table.render().trim_end_matches('\n'));
            Ok(())
        }
        KeyCommand::Add(args) => {
            if !args.args.is_empty() {
                return Err(CliError::plain(1, "the key add command expects no arguments, only options - please see `restic help key add` for usage and flags").into());
            }
            let mut opened = open_repository(ctx, LockMode::Shared)?;
            let (id, _, _, _) = store_new_key(ctx, &opened, args)?;
            opened.unlock();
            ctx.printer
                .print(&format!("saved new key with ID {}", id.to_hex()));
            Ok(())
        }
        KeyCommand::Remove(remove) => {
            let [prefix] = remove.args.as_slice() else {
                return Err(
                    CliError::plain(1, "key remove expects one argument as the key id").into(),
                );
            };
            let mut opened = open_repository(ctx, LockMode::Exclusive)?;
            let id = find_key(&opened.repo, prefix).map_err(key_error)?;
            remove_key(&opened.repo, &id).map_err(key_error)?;
            opened.unlock();
            ctx.printer.print(&format!("removed key {}", id.to_hex()));
            Ok(())
        }
        KeyCommand::Passwd(args) => {
            if !args.args.is_empty() {
                return Err(CliError::plain(1, "the key passwd command expects no arguments, only options - please see `restic help key passwd` for usage and flags").into());
            }
            let mut opened = open_repository(ctx, LockMode::Exclusive)?;
            let old = *opened.repo.key_id();
            let (_id, user, host, created) = store_new_key(ctx, &opened, args)?;
            opened
                .repo
                .backend()
                .remove(restix_engine::backend::FileType::Key, &old.to_hex())
                .map_err(|e| fatal(e.to_string()))?;
            opened.unlock();
            ctx.printer.print(&format!(
                "saved new key as <Key of {user}@{host}, created on {}>",
                go_time_string(created)
            ));
            Ok(())
        }
    }
}

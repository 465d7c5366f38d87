//! Help, usage and man pages laid out as cobra lays out restic's, rendered
//! from clap's command definition (flags) and [`crate::help_text`] (usage
//! lines, descriptions, examples, exit statuses).
//!
//! `restix backup --help`:
//!
//! ```text
//!
//! <description>
//!
//! EXIT STATUS
//! ===========
//! ...
//!
//! Usage:
//!   restix backup [flags] [FILE/DIR] ...
//!
//! Flags:
//!   -n, --dry-run     do not upload or write any data, just show what would be done
//!   ...
//!
//! Global Flags:
//!       --cacert file   file to load root certificates from ...
//! ```
//!
//! Flags are sorted by name as pflag sorts them (forget keeps its
//! definition order, as restic's does); hidden and deprecated flags are
//! left out; the value name is the clap value name in lower case.

use std::any::TypeId;

use clap::{Arg, Command};

use crate::help_text::{command_text, group_of, ExitStatuses, ROOT_DESCRIPTION};
use crate::pflag::is_available;

/// The commands from the root down to the one at `path` (names).
fn resolve<'a>(root: &'a Command, path: &[String]) -> Vec<&'a Command> {
    let mut chain = vec![root];
    let mut current = root;
    for name in path {
        match current.find_subcommand(name) {
            Some(sub) => {
                chain.push(sub);
                current = sub;
            }
            None => break,
        }
    }
    chain
}

/// The command path as typed: `restix key add`.
fn command_path(program: &str, chain: &[&Command]) -> String {
    let mut words = vec![program.to_string()];
    words.extend(chain.iter().skip(1).map(|c| c.get_name().to_string()));
    words.join(" ")
}

/// The path below the root used as key into [`command_text`].
fn text_key(chain: &[&Command]) -> String {
    chain
        .iter()
        .skip(1)
        .map(|c| c.get_name())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One-line summary of a command (cobra's `Short`).
fn short(command: &Command) -> String {
    command
        .get_about()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// A flag's usage text as restic writes it: lower-case first letter.
fn flag_usage(arg: &Arg) -> String {
    let text = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
    let mut chars = text.chars();
    match (chars.next(), chars.clone().next()) {
        (Some(first), Some(second)) if first.is_uppercase() && !second.is_uppercase() => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => text,
    }
}

fn is_integer(arg: &Arg) -> bool {
    let id = arg.get_value_parser().type_id();
    [
        TypeId::of::<i64>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<u32>(),
        TypeId::of::<i32>(),
    ]
    .iter()
    .any(|t| id == *t)
}

/// A flag line as pflag's `FlagUsages` builds it, split at the column gap.
struct FlagLine {
    name: String,
    head: String,
    usage: String,
}

fn flag_line(arg: &Arg) -> Option<FlagLine> {
    let long = arg.get_long()?;
    let mut head = match arg.get_short() {
        Some(short) => format!("  -{short}, --{long}"),
        None => format!("      --{long}"),
    };
    if arg.get_action().takes_values() {
        let name = arg
            .get_value_names()
            .and_then(|names| names.first())
            .map(|n| n.to_lowercase())
            .unwrap_or_else(|| "string".to_string());
        head.push(' ');
        head.push_str(&name);
    }
    let mut usage = flag_usage(arg);
    if let Some(default) = arg.get_default_values().first() {
        let default = default.to_string_lossy();
        if !default.is_empty() {
            if is_integer(arg) {
                usage.push_str(&format!(" (default {default})"));
            } else {
                usage.push_str(&format!(" (default {default:?})"));
            }
        }
    }
    Some(FlagLine {
        name: long.to_string(),
        head,
        usage,
    })
}

fn help_flag_line(name: &str) -> FlagLine {
    FlagLine {
        name: "help".to_string(),
        head: "  -h, --help".to_string(),
        usage: format!("help for {name}"),
    }
}

/// pflag's `FlagUsages`: one line per flag, usage texts aligned.
fn render_flags(mut lines: Vec<FlagLine>, sort: bool) -> String {
    if sort {
        lines.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let width = lines.iter().map(|l| l.head.len()).max().unwrap_or(0);
    let mut out = String::new();
    for line in lines {
        let pad = " ".repeat(width - line.head.len());
        out.push_str(&format!("{}{pad}   {}\n", line.head, line.usage));
    }
    out.trim_end().to_string()
}

/// The visible local and inherited flags of the last command of `chain`.
fn flag_sections(chain: &[&Command], program: &str) -> (Vec<FlagLine>, Vec<FlagLine>) {
    let Some(command) = chain.last() else {
        return (Vec::new(), Vec::new());
    };
    let root = chain[0];
    let visible = |a: &&Arg| !a.is_positional() && !a.is_hide_set();
    let name = if chain.len() == 1 {
        program.to_string()
    } else {
        command.get_name().to_string()
    };
    let mut local: Vec<FlagLine> = command
        .get_arguments()
        .filter(visible)
        .filter(|a| chain.len() == 1 || !a.is_global_set())
        .filter_map(flag_line)
        .collect();
    local.push(help_flag_line(&name));
    let inherited = if chain.len() == 1 {
        Vec::new()
    } else {
        root.get_arguments()
            .filter(visible)
            .filter(|a| a.is_global_set())
            .filter_map(flag_line)
            .collect()
    };
    (local, inherited)
}

/// The usage line: the parent's path, the command's usage pattern, and
/// `[flags]` unless the pattern has it.
fn use_line(program: &str, chain: &[&Command]) -> String {
    let key = text_key(chain);
    let pattern = command_text(&key)
        .map(|t| t.usage.to_string())
        .unwrap_or_else(|| {
            chain
                .last()
                .map(|c| c.get_name().to_string())
                .unwrap_or_default()
        });
    let parent = command_path(program, &chain[..chain.len().saturating_sub(1)]);
    let mut line = format!("{parent} {pattern}");
    if !line.contains("[flags]") {
        line.push_str(" [flags]");
    }
    line
}

/// The description block: restic's `Long` (description and exit
/// statuses), or the summary.
fn description(chain: &[&Command]) -> String {
    if chain.len() == 1 {
        return format!("\n{ROOT_DESCRIPTION}\n");
    }
    let key = text_key(chain);
    let about = chain.last().map(|c| short(c)).unwrap_or_default();
    match command_text(&key) {
        Some(text) if text.examples.is_empty() && text.exit != ExitStatuses::None => {
            format!("\n{}\n\n{}", text.description, text.exit.section())
        }
        Some(text) => format!("\n{}\n", text.description),
        None => about,
    }
}

/// The examples block (with the exit statuses, as restic's `find` has it).
fn examples(chain: &[&Command]) -> Option<String> {
    let text = command_text(&text_key(chain))?;
    if text.examples.is_empty() {
        return None;
    }
    let mut block = text.examples.to_string();
    if text.exit != ExitStatuses::None {
        block.push_str("\n\n");
        block.push_str(text.exit.section().trim_end());
    }
    Some(block)
}

/// Subcommand listing lines, padded like cobra (at least 11 columns).
fn command_rows(parent: &Command, filter: impl Fn(&Command) -> bool) -> Vec<String> {
    let padding = parent
        .get_subcommands()
        .map(|c| c.get_name().len())
        .chain(std::iter::once(11))
        .max()
        .unwrap_or(11);
    let mut subs: Vec<&Command> = parent
        .get_subcommands()
        .filter(|c| is_available(c))
        .filter(|c| filter(c))
        .collect();
    subs.sort_by(|a, b| a.get_name().cmp(b.get_name()));
    subs.iter()
        .map(|c| format!("  {:<padding$} {}", c.get_name(), short(c)))
        .collect()
}

/// cobra's usage text (`Usage:` ... `Use "x [command] --help" ...`).
pub fn usage(root: &Command, path: &[String], program: &str) -> String {
    let chain = resolve(root, path);
    let Some(command) = chain.last().copied() else {
        return String::new();
    };
    let is_root = chain.len() == 1;
    let has_subcommands = command.has_subcommands();
    let mut out = String::from("Usage:");
    if !is_root && !has_subcommands {
        out.push_str(&format!("\n  {}", use_line(program, &chain)));
    }
    if has_subcommands {
        out.push_str(&format!("\n  {} [command]", command_path(program, &chain)));
    }
    if let Some(block) = examples(&chain) {
        out.push_str("\n\nExamples:\n");
        out.push_str(&block);
    }
    if has_subcommands {
        if is_root {
            for group in [
                "Available Commands:",
                "Advanced Options:",
                "Additional Commands:",
            ] {
                let mut rows = command_rows(command, |c| group_of(c.get_name()) == group);
                if group == "Additional Commands:" {
                    let padding = command
                        .get_subcommands()
                        .map(|c| c.get_name().len())
                        .chain(std::iter::once(11))
                        .max()
                        .unwrap_or(11);
                    rows.push(format!("  {:<padding$} Help about any command", "help"));
                    rows.sort();
                }
                if rows.is_empty() {
                    continue;
                }
                out.push_str(&format!("\n\n{group}"));
                for row in rows {
                    out.push('\n');
                    out.push_str(&row);
                }
            }
        } else {
            out.push_str("\n\nAvailable Commands:");
            for row in command_rows(command, |_| true) {
                out.push('\n');
                out.push_str(&row);
            }
        }
    }
    let (local, inherited) = flag_sections(&chain, program);
    let sort = text_key(&chain) != "forget";
    out.push_str("\n\nFlags:\n");
    out.push_str(&render_flags(local, sort));
    if !inherited.is_empty() {
        out.push_str("\n\nGlobal Flags:\n");
        out.push_str(&render_flags(inherited, true));
    }
    if has_subcommands {
        out.push_str(&format!(
            "\n\nUse \"{} [command] --help\" for more information about a command.",
            command_path(program, &chain)
        ));
    }
    out.push('\n');
    out
}

/// cobra's help: the description, a blank line, then the usage.
pub fn help(root: &Command, path: &[String], program: &str) -> String {
    let chain = resolve(root, path);
    let description = description(&chain);
    let description = description.trim_end();
    let mut out = String::new();
    if !description.is_empty() {
        out.push_str(description);
        out.push_str("\n\n");
    }
    out.push_str(&usage(root, path, program));
    out
}

/// Escape text for roff.
fn roff(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let line = line.replace('\\', "\\e").replace('-', "\\-");
        if line.starts_with('.') || line.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn man_flags(lines: &[FlagLine]) -> String {
    let mut sorted: Vec<&FlagLine> = lines.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = String::new();
    for line in sorted {
        let head = line.head.trim();
        let (names, value) = match head.rsplit_once(' ') {
            Some((names, value)) if !value.starts_with('-') => (names, Some(value)),
            _ => (head, None),
        };
        let names: Vec<String> = names
            .split(", ")
            .map(|n| format!("\\fB{}\\fP", n.replace('-', "\\-")))
            .collect();
        out.push_str(".PP\n");
        out.push_str(&names.join(", "));
        if let Some(value) = value {
            out.push_str(&format!("=\\fI{}\\fP", value.replace('-', "\\-")));
        }
        out.push_str("\n.RS\n");
        out.push_str(&roff(&line.usage));
        out.push_str(".RE\n");
    }
    out
}

/// Man pages as cobra's `GenManTree` writes restic's: one per available
/// command, named `<program>[-<command>...].1`, with the sections NAME,
/// SYNOPSIS, DESCRIPTION, OPTIONS, OPTIONS INHERITED FROM PARENT COMMANDS,
/// EXAMPLE and SEE ALSO.
pub fn man_pages(root: &Command, program: &str) -> Vec<(String, String)> {
    let mut pages = Vec::new();
    fn visit(root: &Command, program: &str, path: Vec<String>, pages: &mut Vec<(String, String)>) {
        let chain = resolve(root, &path);
        let Some(command) = chain.last().copied() else {
            return;
        };
        let dashed = command_path(program, &chain).replace(' ', "-");
        let summary = if chain.len() == 1 {
            "Backup and restore files".to_string()
        } else {
            short(command)
        };
        let mut page = String::new();
        page.push_str(".nh\n");
        page.push_str(&format!(
            ".TH \"{}\" \"1\" \"Jan 2017\" \"generated by `{program} generate`\" \"\"\n",
            command_path(program, &chain).to_uppercase()
        ));
        page.push_str(".SH NAME\n");
        page.push_str(&format!(
            "{} \\- {}\n",
            dashed.replace('-', "\\-"),
            roff(&summary).trim_end()
        ));
        page.push_str(".SH SYNOPSIS\n");
        let synopsis = if chain.len() == 1 || command.has_subcommands() {
            format!("{} [command]", command_path(program, &chain))
        } else {
            use_line(program, &chain)
        };
        page.push_str(&format!("\\fB{}\\fP\n", roff(&synopsis).trim_end()));
        page.push_str(".SH DESCRIPTION\n.PP\n");
        page.push_str(&roff(description(&chain).trim()));
        let (local, inherited) = flag_sections(&chain, program);
        page.push_str(".SH OPTIONS\n");
        page.push_str(&man_flags(&local));
        if !inherited.is_empty() {
            page.push_str(".SH OPTIONS INHERITED FROM PARENT COMMANDS\n");
            page.push_str(&man_flags(&inherited));
        }
        if let Some(block) = examples(&chain) {
            page.push_str(".SH EXAMPLE\n.EX\n");
            page.push_str(&roff(&block));
            page.push_str(".EE\n");
        }
        let mut see_also = Vec::new();
        if chain.len() > 1 {
            let parent = command_path(program, &chain[..chain.len() - 1]).replace(' ', "-");
            see_also.push(format!("\\fB{}(1)\\fP", parent.replace('-', "\\-")));
        }
        let mut children: Vec<&Command> = command
            .get_subcommands()
            .filter(|c| is_available(c))
            .collect();
        children.sort_by(|a, b| a.get_name().cmp(b.get_name()));
        for child in &children {
            see_also.push(format!(
                "\\fB{}\\-{}(1)\\fP",
                dashed.replace('-', "\\-"),
                child.get_name().replace('-', "\\-")
            ));
        }
        if !see_also.is_empty() {
            page.push_str(".SH SEE ALSO\n");
            page.push_str(&see_also.join(", "));
            page.push('\n');
        }
        pages.push((format!("{dashed}.1"), page));
        for child in children {
            let mut child_path = path.clone();
            child_path.push(child.get_name().to_string());
            visit(root, program, child_path, pages);
        }
    }
    visit(root, program, Vec::new(), &mut pages);
    pages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::command_tree;

    fn path(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn command_help_has_cobra_sections() {
        let root = command_tree("restix");
        let text = help(&root, &path(&["backup"]), "restix");
        assert!(text.starts_with('\n'), "{text}");
        let order = [
            "\nEXIT STATUS\n===========\n",
            "\nUsage:\n  restix backup [flags] [FILE/DIR] ...\n",
            "\nFlags:\n",
            "\nGlobal Flags:\n",
        ];
        let mut at = 0;
        for part in order {
            let found = text[at..]
                .find(part)
                .unwrap_or_else(|| panic!("{part:?} in {text}"));
            at += found + part.len();
        }
        assert!(text.contains("  -n, --dry-run "), "{text}");
        assert!(text.contains("  -h, --help "), "{text}");
        assert!(text.contains("help for backup"), "{text}");
        assert!(text.contains("      --stdin-filename filename "), "{text}");
        assert!(text.contains("(default \"stdin\")"), "{text}");
        // Hidden and deprecated flags are not listed.
        assert!(!text.contains("--hostname"), "{text}");
        // Global flags are not repeated among the command's own.
        let flags =
            &text[text.find("\nFlags:\n").unwrap()..text.find("\nGlobal Flags:\n").unwrap()];
        assert!(!flags.contains("--repo"), "{flags}");
    }

    #[test]
    fn root_help_groups_commands() {
        let root = command_tree("restic");
        let text = help(&root, &[], "restic");
        assert!(text.contains("\nUsage:\n  restic [command]\n"), "{text}");
        let available = text.find("\nAvailable Commands:\n").unwrap();
        let advanced = text.find("\nAdvanced Options:\n").unwrap();
        let additional = text.find("\nAdditional Commands:\n").unwrap();
        assert!(available < advanced && advanced < additional, "{text}");
        assert!(
            text.contains("\n  features      Print list of feature flags"),
            "{text}"
        );
        assert!(
            text.contains("\n  help          Help about any command"),
            "{text}"
        );
        assert!(!text.contains("rebuild-index"), "{text}");
        assert!(text.contains("\nFlags:\n"), "{text}");
        assert!(!text.contains("Global Flags"), "{text}");
        assert!(text.contains("help for restic"), "{text}");
        assert!(text
            .ends_with("Use \"restic [command] --help\" for more information about a command.\n"));
    }

    #[test]
    fn version_and_restore_chain_keep_their_own_words() {
        let root = command_tree("restix");
        assert!(help(&root, &path(&["version"]), "restix").contains("Prints the version"));
        assert!(help(&root, &path(&["restore-chain"]), "restix").contains("OpenNebula"));
        let version = root.find_subcommand("version").unwrap();
        assert_eq!(short(version), "Print version information");
    }

    #[test]
    fn examples_and_subcommand_listing() {
        let root = command_tree("restic");
        let find = help(&root, &path(&["find"]), "restic");
        let examples = find.find("\nExamples:\nrestic find config.json\n").unwrap();
        assert!(find[examples..].contains("EXIT STATUS"), "{find}");
        let key = help(&root, &path(&["key"]), "restic");
        assert!(key.contains("\nUsage:\n  restic key [command]\n"), "{key}");
        assert!(key.contains("\nAvailable Commands:\n  add "), "{key}");
        assert!(key.contains("Use \"restic key [command] --help\""), "{key}");
    }

    #[test]
    fn man_pages_have_cobra_sections() {
        let root = command_tree("restic");
        let pages = man_pages(&root, "restic");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"restic.1"));
        assert!(names.contains(&"restic-backup.1"));
        assert!(names.contains(&"restic-key-add.1"));
        assert!(!names.contains(&"restic-rebuild-index.1"));
        let backup = &pages
            .iter()
            .find(|(n, _)| n == "restic-backup.1")
            .unwrap()
            .1;
        for section in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH OPTIONS INHERITED FROM PARENT COMMANDS",
            ".SH SEE ALSO",
        ] {
            assert!(backup.contains(section), "{section} in {backup}");
        }
        let find = &pages.iter().find(|(n, _)| n == "restic-find.1").unwrap().1;
        assert!(find.contains(".SH EXAMPLE"), "{find}");
    }
}

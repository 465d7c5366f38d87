//! The crate's layering rules (docs/cli-layers.md), checked on its own
//! sources: no module below the commands names them, no command reaches a
//! sibling through `super::`, the argument layer imports no command or
//! context, and the modules of `src/` import each other in no circle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A source file without its test module and comment lines: what the
/// module imports when it is built for real.
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text,
    };
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules of `crate::` a piece of code names, among `known`.
fn named_modules(code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let first = item.trim().split("::").next().unwrap_or_default();
                if known.contains(first) {
                    named.insert(first.to_string());
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if known.contains(&name) {
            named.insert(name);
        }
    }
    named
}

fn src() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The modules at `src/` (file stems, `commands` for the folder).
fn top_modules() -> BTreeMap<String, std::path::PathBuf> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src()).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if path.is_dir() {
            modules.insert(name, path.join("mod.rs"));
        } else if path.extension().is_some_and(|e| e == "rs") && name != "main" {
            modules.insert(name, path);
        }
    }
    modules
}

fn command_files() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![src().join("commands")];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn no_command_reaches_a_sibling() {
    let files = command_files();
    assert!(files.len() > 30, "commands/ holds the commands");
    for file in files {
        if file.file_name().is_some_and(|n| n == "mod.rs") {
            continue;
        }
        let code = code_of(&file);
        assert!(
            !code.contains("super::"),
            "{} imports through super:: (a sibling or commands/mod.rs); \
             move what it needs below the commands",
            file.display()
        );
    }
}

#[test]
fn nothing_below_the_commands_names_them() {
    for (name, path) in top_modules() {
        if name == "commands" || name == "lib" || name == "layers" {
            continue;
        }
        assert!(
            !code_of(&path).contains("crate::commands"),
            "{} names crate::commands",
            path.display()
        );
    }
}

#[test]
fn argument_layer_imports_no_command_or_context() {
    let known: BTreeSet<String> = top_modules().into_keys().collect();
    let allowed: BTreeSet<&str> = ["args", "image_args", "pflag", "help", "help_text"].into();
    for name in &allowed {
        let path = src().join(format!("{name}.rs"));
        for used in named_modules(&code_of(&path), &known) {
            assert!(
                allowed.contains(used.as_str()),
                "{name}.rs (argument layer) imports crate::{used}"
            );
        }
    }
}

#[test]
fn modules_import_each_other_in_no_circle() {
    let modules = top_modules();
    let known: BTreeSet<String> = modules.keys().cloned().collect();
    let mut imports: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, path) in &modules {
        let mut used = named_modules(&code_of(path), &known);
        used.remove(name);
        imports.insert(name.clone(), used);
    }
    // Take away, again and again, the modules that import none of those
    // left; a circle is what never goes.
    let mut left = imports.clone();
    loop {
        let ground: Vec<String> = left
            .iter()
            .filter(|(_, used)| used.iter().all(|u| !left.contains_key(u)))
            .map(|(name, _)| name.clone())
            .collect();
        if ground.is_empty() {
            break;
        }
        for name in ground {
            left.remove(&name);
        }
    }
    assert!(
        left.is_empty(),
        "modules in an import circle (or above one): {:?}",
        left.keys().collect::<Vec<_>>()
    );
}

//! restic's command-line grammar (spf13/cobra + spf13/pflag) read off
//! clap's own command definition.
//!
//! restic parses with pflag, whose rules differ from clap's in ways scripts
//! rely on; [`interpret`] applies pflag's rules to the raw argv and hands
//! clap a canonical line (`restic <command> [<sub>] --long=value ... --
//! positionals...`) that clap cannot misread:
//!
//! - the command is the first word that is not a flag or a flag's value,
//!   wherever the flags are (`restic --json -r R backup /p`);
//! - a flag given twice keeps the last value (pflag `Set` overwrites);
//!   repeatable flags (clap `Append`) keep every value;
//! - booleans take `--flag=true|false` (Go `strconv.ParseBool`), the count
//!   flag `-v` takes `--verbose=N`;
//! - a value flag always takes the next word, even one starting with `-`
//!   (`--limit-upload -1`), or the rest of a short cluster (`-rREPO`,
//!   `-r=REPO`);
//! - integer flags accept Go's `0x`/`0o`/`0b` forms and report errors in
//!   Go's words;
//! - unknown flags, missing values and invalid values are reported with
//!   pflag's messages (`unknown flag: --foo`, `flag needs an argument:
//!   'r' in -r`, `invalid argument "x" for "--latest" flag: ...`);
//! - `-h/--help` and `help <topic>` ask for help, a mistyped command gets
//!   cobra's "Did you mean this?", deprecated flags and commands print
//!   pflag's/cobra's deprecation notes.
//!
//! Every flag's name, shorthand and kind come from the clap [`Command`]
//! (`Cli::command()`), so a flag added there is understood here without a
//! second list.

use std::any::TypeId;
use std::collections::HashMap;

use clap::{Arg, ArgAction, Command};

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Run a command: `argv` is the canonical line for clap.
    Run {
        argv: Vec<String>,
        /// Deprecation notes pflag/cobra print on stderr before running.
        warnings: Vec<String>,
    },
    /// Print the help of the command at `path` (names below the root).
    Help { path: Vec<String> },
    /// `help <topic>` for a topic that is no command (cobra: "Unknown help
    /// topic", then the root's usage, exit 0).
    UnknownHelpTopic { topic: Vec<String> },
}

/// A command line pflag/cobra would refuse: the message restic prints
/// (exit 1), and whether `--json` was already set when parsing stopped
/// (then restic prints it as a JSON `exit_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFailure {
    pub message: String,
    pub json: bool,
}

impl ParseFailure {
    fn new(message: impl Into<String>, json: bool) -> Self {
        ParseFailure {
            message: message.into(),
            json,
        }
    }
}

/// How a flag takes values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `--flag`, `--flag=false`.
    Bool,
    /// `-v`, `-vv`, `--verbose=2`.
    Count,
    /// One value; given twice, the last one counts.
    Single,
    /// Every value is kept (pflag StringArray/StringSlice, restic TagLists).
    Multiple,
}

/// Go's integer syntax for values of clap args parsed as integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    None,
    Signed,
    Unsigned,
}

/// One flag as pflag sees it.
#[derive(Debug, Clone)]
struct Flag {
    long: String,
    short: Option<char>,
    kind: Kind,
    number: Number,
}

impl Flag {
    fn from_arg(arg: &Arg) -> Option<Flag> {
        if arg.is_positional() {
            return None;
        }
        let kind = match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => Kind::Bool,
            ArgAction::Count => Kind::Count,
            ArgAction::Append => Kind::Multiple,
            ArgAction::Set => Kind::Single,
            _ => return None,
        };
        let type_id = arg.get_value_parser().type_id();
        let number = if [
            TypeId::of::<i64>(),
            TypeId::of::<i32>(),
            TypeId::of::<isize>(),
        ]
        .iter()
        .any(|t| type_id == *t)
        {
            Number::Signed
        } else if [
            TypeId::of::<u64>(),
            TypeId::of::<u32>(),
            TypeId::of::<usize>(),
        ]
        .iter()
        .any(|t| type_id == *t)
        {
            Number::Unsigned
        } else {
            Number::None
        };
        Some(Flag {
            long: arg.get_long()?.to_string(),
            short: arg.get_short(),
            kind,
            number,
        })
    }

    /// pflag's name for the flag in "invalid argument" messages.
    fn display(&self) -> String {
        match self.short {
            Some(short) => format!("-{short}, --{}", self.long),
            None => format!("--{}", self.long),
        }
    }

    fn takes_value(&self) -> bool {
        matches!(self.kind, Kind::Single | Kind::Multiple)
    }
}

/// The flags valid for one command: its own and the root's global ones,
/// with the aliases clap knows (restic's deprecated `--hostname`).
#[derive(Debug, Default)]
struct FlagSet {
    flags: Vec<Flag>,
    by_long: HashMap<String, usize>,
    by_short: HashMap<char, usize>,
}

impl FlagSet {
    fn add(&mut self, arg: &Arg) {
        let Some(flag) = Flag::from_arg(arg) else {
            return;
        };
        if self.by_long.contains_key(&flag.long) {
            return;
        }
        let index = self.flags.len();
        self.by_long.insert(flag.long.clone(), index);
        for alias in arg.get_all_aliases().into_iter().flatten() {
            self.by_long.entry(alias.to_string()).or_insert(index);
        }
        if let Some(short) = flag.short {
            self.by_short.entry(short).or_insert(index);
        }
        self.flags.push(flag);
    }

    /// The flags of the command at `path` below `root`.
    fn for_command(root: &Command, path: &[String]) -> FlagSet {
        let mut set = FlagSet::default();
        let mut command = root;
        for name in path {
            match command.find_subcommand(name) {
                Some(sub) => command = sub,
                None => break,
            }
        }
        for arg in command.get_arguments() {
            set.add(arg);
        }
        for arg in root.get_arguments().filter(|a| a.is_global_set()) {
            set.add(arg);
        }
        set
    }

    /// Every flag of every command: used to step over flags (and their
    /// values) written before the command name, which is not known yet.
    fn union(root: &Command) -> FlagSet {
        let mut set = FlagSet::default();
        fn visit(set: &mut FlagSet, command: &Command) {
            // Value flags first, so a name that takes a value anywhere is
            // stepped over with its value.
            for arg in command.get_arguments() {
                if Flag::from_arg(arg).is_some_and(|f| f.takes_value()) {
                    set.add(arg);
                }
            }
            for arg in command.get_arguments() {
                set.add(arg);
            }
            for sub in command.get_subcommands() {
                visit(set, sub);
            }
        }
        visit(&mut set, root);
        set
    }

    fn long(&self, name: &str) -> Option<&Flag> {
        self.by_long.get(name).and_then(|i| self.flags.get(*i))
    }

    fn short(&self, c: char) -> Option<&Flag> {
        self.by_short.get(&c).and_then(|i| self.flags.get(*i))
    }
}

/// Deprecated flags: pflag hides them from help and prints `Flag --x has
/// been deprecated, <note>` when one is used (restic 0.18.1's
/// `MarkDeprecated` calls).
const DEPRECATED_FLAGS: &[(&str, &str)] = &[
    ("hostname", "use --host"),
    (
        "check-unused",
        "`--check-unused` is deprecated and will be ignored",
    ),
    ("last", "use --latest 1"),
    ("repo2", "use --repo or --from-repo instead"),
    (
        "repository-file2",
        "use --repository-file or --from-repository-file instead",
    ),
    ("snapshot-template", "use --time-template"),
];

/// Deprecated commands: cobra hides them and prints `Command "x" is
/// deprecated, <note>` when one runs.
const DEPRECATED_COMMANDS: &[(&str, &str)] = &[("rebuild-index", "Use \"repair index\" instead")];

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)` (or `ParseUint`): decimal, `0x`,
/// `0o`/leading `0` octal, `0b`, `_` between digits after a prefix. The
/// error is Go's text.
fn parse_go_integer(value: &str, signed: bool) -> Result<i128, String> {
    let function = if signed {
        "strconv.ParseInt"
    } else {
        "strconv.ParseUint"
    };
    let syntax = || format!("{function}: parsing {value:?}: invalid syntax");
    let range = || format!("{function}: parsing {value:?}: value out of range");
    let (negative, body) = match value.as_bytes().first() {
        Some(b'-') if signed => (true, &value[1..]),
        Some(b'+') if signed => (false, &value[1..]),
        _ => (false, value),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest.to_string(), true)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest.to_string(), true)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    if digits.contains('_') {
        // Underscores only with a base prefix, between digits.
        let ok = prefixed
            && !digits.starts_with('_')
            && !digits.ends_with('_')
            && !digits.contains("__");
        if !ok {
            return Err(syntax());
        }
    }
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(syntax());
    }
    let magnitude = u128::from_str_radix(&digits, radix).map_err(|_| range())?;
    let (min, max): (i128, i128) = if signed {
        (i128::from(i64::MIN), i128::from(i64::MAX))
    } else {
        (0, i128::from(u64::MAX))
    };
    let magnitude = i128::try_from(magnitude).map_err(|_| range())?;
    let number = if negative { -magnitude } else { magnitude };
    if number < min || number > max {
        return Err(range());
    }
    Ok(number)
}

/// Values collected for one flag.
#[derive(Debug, Default, Clone)]
struct Seen {
    bool_value: Option<bool>,
    count: u64,
    values: Vec<String>,
    order: usize,
}

/// The command line as pflag reads it once the command is known.
struct Walk<'a> {
    set: &'a FlagSet,
    seen: HashMap<usize, Seen>,
    positionals: Vec<String>,
    help: bool,
    json: bool,
    warnings: Vec<String>,
    next_order: usize,
}

impl<'a> Walk<'a> {
    fn new(set: &'a FlagSet) -> Self {
        Walk {
            set,
            seen: HashMap::new(),
            positionals: Vec::new(),
            help: false,
            json: false,
            warnings: Vec::new(),
            next_order: 0,
        }
    }

    fn fail(&self, message: impl Into<String>) -> ParseFailure {
        ParseFailure::new(message, self.json)
    }

    /// Apply `value` to the flag (pflag's `Set`).
    fn set(&mut self, name: &str, value: Option<&str>) -> Result<(), ParseFailure> {
        let Some(index) = self.set.by_long.get(name).copied() else {
            return Err(self.fail(format!("unknown flag: --{name}")));
        };
        let Some(flag) = self.set.flags.get(index).cloned() else {
            return Err(self.fail(format!("unknown flag: --{name}")));
        };
        if let Some((_, note)) = DEPRECATED_FLAGS.iter().find(|(n, _)| *n == name) {
            self.warnings
                .push(format!("Flag --{name} has been deprecated, {note}"));
        }
        let invalid = |value: &str, cause: String| {
            format!(
                "invalid argument {value:?} for {:?} flag: {cause}",
                flag.display()
            )
        };
        let order = self.next_order;
        let json_flag = flag.long == "json";
        let entry = self.seen.entry(index).or_insert_with(|| Seen {
            order,
            ..Seen::default()
        });
        if entry.order == order {
            self.next_order += 1;
        }
        match flag.kind {
            Kind::Bool => {
                let parsed = match value {
                    None => true,
                    Some(text) => parse_go_bool(text).ok_or_else(|| {
                        ParseFailure::new(
                            invalid(
                                text,
                                format!("strconv.ParseBool: parsing {text:?}: invalid syntax"),
                            ),
                            self.json,
                        )
                    })?,
                };
                entry.bool_value = Some(parsed);
                if json_flag {
                    self.json = parsed;
                }
            }
            Kind::Count => match value {
                None => entry.count += 1,
                Some(text) => {
                    let level = parse_go_integer(text, true)
                        .map_err(|cause| ParseFailure::new(invalid(text, cause), self.json))?;
                    entry.count = u64::try_from(level).unwrap_or(0);
                }
            },
            Kind::Single | Kind::Multiple => {
                let text = value.unwrap_or_default();
                let text = match flag.number {
                    Number::None => text.to_string(),
                    Number::Signed | Number::Unsigned => {
                        parse_go_integer(text, flag.number == Number::Signed)
                            .map_err(|cause| ParseFailure::new(invalid(text, cause), self.json))?
                            .to_string()
                    }
                };
                if flag.kind == Kind::Single {
                    entry.values = vec![text];
                } else {
                    entry.values.push(text);
                }
            }
        }
        Ok(())
    }

    /// One `--name[=value]` token; returns how many following tokens it used.
    fn long_token(&mut self, body: &str, next: Option<&String>) -> Result<usize, ParseFailure> {
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(self.fail(format!("bad flag syntax: --{body}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (body, None),
        };
        if name == "help" {
            self.help = match inline {
                Some(v) => parse_go_bool(v).unwrap_or(true),
                None => true,
            };
            return Ok(0);
        }
        let Some(flag) = self.set.long(name) else {
            return Err(self.fail(format!("unknown flag: --{name}")));
        };
        if inline.is_some() || !flag.takes_value() {
            self.set(name, inline)?;
            return Ok(0);
        }
        match next {
            Some(value) => {
                self.set(name, Some(value))?;
                Ok(1)
            }
            None => Err(self.fail(format!("flag needs an argument: --{name}"))),
        }
    }

    /// One `-abc` cluster; returns how many following tokens it used.
    fn short_token(&mut self, cluster: &str, next: Option<&String>) -> Result<usize, ParseFailure> {
        let mut rest = cluster;
        while let Some(c) = rest.chars().next() {
            let after = &rest[c.len_utf8()..];
            let Some(flag) = self.set.short(c).cloned() else {
                if c == 'h' {
                    self.help = true;
                    rest = after;
                    continue;
                }
                return Err(self.fail(format!("unknown shorthand flag: {c:?} in -{cluster}")));
            };
            if let Some(value) = after.strip_prefix('=') {
                self.set(&flag.long, Some(value))?;
                return Ok(0);
            }
            if !flag.takes_value() {
                self.set(&flag.long, None)?;
                rest = after;
                continue;
            }
            if !after.is_empty() {
                self.set(&flag.long, Some(after))?;
                return Ok(0);
            }
            return match next {
                Some(value) => {
                    self.set(&flag.long, Some(value))?;
                    Ok(1)
                }
                None => Err(self.fail(format!("flag needs an argument: {c:?} in -{cluster}"))),
            };
        }
        Ok(0)
    }

    /// Parse `tokens` (the argv without the program and command names).
    fn run(&mut self, tokens: &[String]) -> Result<(), ParseFailure> {
        let mut index = 0;
        while let Some(token) = tokens.get(index) {
            index += 1;
            if token == "--" {
                self.positionals
                    .extend(tokens.get(index..).unwrap_or_default().iter().cloned());
                break;
            }
            if let Some(body) = token.strip_prefix("--") {
                index += self.long_token(body, tokens.get(index))?;
            } else if let Some(cluster) = token.strip_prefix('-').filter(|c| !c.is_empty()) {
                index += self.short_token(cluster, tokens.get(index))?;
            } else {
                self.positionals.push(token.clone());
            }
        }
        Ok(())
    }

    /// The canonical argv tail: flags in the order first seen, then `--`
    /// and the positionals.
    fn canonical(&self) -> Vec<String> {
        let mut entries: Vec<(&usize, &Seen)> = self.seen.iter().collect();
        entries.sort_by_key(|(_, seen)| seen.order);
        let mut out = Vec::new();
        for (index, seen) in entries {
            let Some(flag) = self.set.flags.get(*index) else {
                continue;
            };
            match flag.kind {
                Kind::Bool => {
                    if seen.bool_value == Some(true) {
                        out.push(format!("--{}", flag.long));
                    }
                }
                Kind::Count => {
                    for _ in 0..seen.count.min(16) {
                        out.push(format!("--{}", flag.long));
                    }
                }
                Kind::Single | Kind::Multiple => {
                    for value in &seen.values {
                        out.push(format!("--{}={value}", flag.long));
                    }
                }
            }
        }
        if !self.positionals.is_empty() {
            out.push("--".to_string());
            out.extend(self.positionals.iter().cloned());
        }
        out
    }
}

/// The command named by the first word that is not a flag or a flag's
/// value, and below it the subcommands named by the next such words.
/// Returns the names and the argv indices they were found at; an unknown
/// word at the root is cobra's "unknown command" error.
fn find_command(
    root: &Command,
    argv: &[String],
    program: &str,
) -> Result<(Vec<String>, Vec<usize>), ParseFailure> {
    let union = FlagSet::union(root);
    let mut path = Vec::new();
    let mut indices = Vec::new();
    let mut level = root;
    let mut index = 1;
    while let Some(token) = argv.get(index) {
        if token == "--" {
            break;
        }
        if let Some(body) = token.strip_prefix("--") {
            let takes_value =
                !body.contains('=') && union.long(body).is_some_and(Flag::takes_value);
            index += if takes_value { 2 } else { 1 };
            continue;
        }
        if let Some(cluster) = token.strip_prefix('-').filter(|c| !c.is_empty()) {
            let mut consumes_next = false;
            for (position, c) in cluster.char_indices() {
                if union.short(c).is_some_and(Flag::takes_value) {
                    consumes_next = position + c.len_utf8() == cluster.len();
                    break;
                }
            }
            index += if consumes_next { 2 } else { 1 };
            continue;
        }
        if path.is_empty() && token == "help" {
            path.push(token.clone());
            indices.push(index);
            break;
        }
        if !level.has_subcommands() {
            break;
        }
        match level
            .get_subcommands()
            .find(|s| s.get_name() == token || s.get_all_aliases().any(|a| a == token))
        {
            Some(sub) => {
                path.push(sub.get_name().to_string());
                indices.push(index);
                level = sub;
            }
            None if path.is_empty() => {
                return Err(ParseFailure::new(
                    format!(
                        "unknown command {token:?} for {program:?}{}",
                        suggestions(root, token)
                    ),
                    false,
                ))
            }
            None => break,
        }
        index += 1;
    }
    Ok((path, indices))
}

/// Whether cobra lists the command (not hidden, not deprecated).
pub fn is_available(command: &Command) -> bool {
    !command.is_hide_set()
        && !DEPRECATED_COMMANDS
            .iter()
            .any(|(name, _)| *name == command.get_name())
}

/// cobra's `findSuggestions`: commands within Levenshtein distance 2
/// (case-insensitive) or starting with what was typed.
pub fn suggestions(root: &Command, typed: &str) -> String {
    let typed_lower = typed.to_lowercase();
    let mut names: Vec<&str> = root
        .get_subcommands()
        .filter(|c| is_available(c))
        .map(|c| c.get_name())
        .collect();
    names.sort_unstable();
    let found: Vec<&str> = names
        .into_iter()
        .filter(|name| {
            levenshtein(&typed_lower, &name.to_lowercase()) <= 2
                || name.to_lowercase().starts_with(&typed_lower)
        })
        .collect();
    if found.is_empty() {
        return String::new();
    }
    let mut text = String::from("\n\nDid you mean this?\n");
    for name in found {
        text.push('\t');
        text.push_str(name);
        text.push('\n');
    }
    text
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// The program name as invoked (`restix`, or `restic` for the drop-in).
pub fn program_name(argv0: Option<&str>) -> String {
    argv0
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "restix".to_string())
}

/// Read `argv` with pflag/cobra's rules against the command tree `root`.
pub fn interpret(root: &Command, argv: &[String]) -> Result<Request, ParseFailure> {
    let program = program_name(argv.first().map(String::as_str));
    let (path, indices) = find_command(root, argv, &program)?;
    let rest: Vec<String> = argv
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, _)| !indices.contains(i))
        .map(|(_, t)| t.clone())
        .collect();

    if path.first().map(String::as_str) == Some("help") {
        // `help [command...]`: flags are parsed with the root's set.
        let set = FlagSet::for_command(root, &[]);
        let mut walk = Walk::new(&set);
        walk.run(&rest)?;
        let topic = walk.positionals.clone();
        if topic.is_empty() {
            return Ok(Request::Help { path: Vec::new() });
        }
        let mut command = root;
        for name in &topic {
            match command.find_subcommand(name) {
                Some(sub) => command = sub,
                None => return Ok(Request::UnknownHelpTopic { topic }),
            }
        }
        return Ok(Request::Help { path: topic });
    }

    let set = FlagSet::for_command(root, &path);
    let mut walk = Walk::new(&set);
    walk.run(&rest)?;
    let mut command = root;
    for name in &path {
        if let Some(sub) = command.find_subcommand(name) {
            command = sub;
        }
    }
    // cobra: help asked for, or a command that only groups subcommands
    // (`restic`, `restic key`, `restic repair foo`), prints the help.
    if walk.help || command.has_subcommands() {
        return Ok(Request::Help { path });
    }
    let mut warnings = walk.warnings.clone();
    if let Some(name) = path.last() {
        if let Some((_, note)) = DEPRECATED_COMMANDS.iter().find(|(n, _)| n == name) {
            warnings.insert(0, format!("Command {name:?} is deprecated, {note}"));
        }
    }
    let mut canonical = vec![program];
    canonical.extend(path);
    canonical.extend(walk.canonical());
    Ok(Request::Run {
        argv: canonical,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> Command {
        Command::new("restic")
            .arg(
                Arg::new("repo")
                    .short('r')
                    .long("repo")
                    .global(true)
                    .action(ArgAction::Set),
            )
            .arg(
                Arg::new("json")
                    .long("json")
                    .global(true)
                    .action(ArgAction::SetTrue),
            )
            .arg(
                Arg::new("verbose")
                    .short('v')
                    .long("verbose")
                    .global(true)
                    .action(ArgAction::Count),
            )
            .arg(
                Arg::new("limit-upload")
                    .long("limit-upload")
                    .global(true)
                    .value_parser(clap::value_parser!(i64))
                    .action(ArgAction::Set),
            )
            .subcommand(
                Command::new("backup")
                    .arg(Arg::new("tag").long("tag").action(ArgAction::Append))
                    .arg(
                        Arg::new("force")
                            .short('f')
                            .long("force")
                            .action(ArgAction::SetTrue),
                    )
                    .arg(
                        Arg::new("host")
                            .short('H')
                            .long("host")
                            .alias("hostname")
                            .action(ArgAction::Set),
                    )
                    .arg(Arg::new("paths").num_args(0..)),
            )
            .subcommand(
                Command::new("snapshots").arg(
                    Arg::new("latest")
                        .long("latest")
                        .value_parser(clap::value_parser!(usize))
                        .action(ArgAction::Set),
                ),
            )
            .subcommand(
                Command::new("key")
                    .subcommand(Command::new("list"))
                    .subcommand(Command::new("add")),
            )
            .subcommand(Command::new("rebuild-index"))
    }

    fn line(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn run(words: &[&str]) -> Vec<String> {
        match interpret(&tree(), &line(words)) {
            Ok(Request::Run { argv, .. }) => argv,
            other => panic!("{words:?}: {other:?}"),
        }
    }

    fn failure(words: &[&str]) -> String {
        match interpret(&tree(), &line(words)) {
            Err(failure) => failure.message,
            other => panic!("{words:?}: {other:?}"),
        }
    }

    #[test]
    fn command_found_behind_flags_and_canonical_line() {
        assert_eq!(
            run(&["restic", "--json", "-r", "R", "--force", "--tag=x", "backup", "/p"]),
            line(&["restic", "backup", "--json", "--repo=R", "--force", "--tag=x", "--", "/p"])
        );
        assert_eq!(
            run(&["/usr/bin/restix", "-rR", "backup", "-f", "a", "--", "-b"]),
            line(&["restix", "backup", "--repo=R", "--force", "--", "a", "-b"])
        );
        assert_eq!(
            run(&["restic", "backup", "-r=R", "--limit-upload", "-1"]),
            line(&["restic", "backup", "--repo=R", "--limit-upload=-1"])
        );
    }

    #[test]
    fn last_value_wins_and_arrays_keep_all() {
        assert_eq!(
            run(&["restic", "-r", "A", "backup", "--repo", "B", "--tag", "t1", "--tag=t2"]),
            line(&["restic", "backup", "--repo=B", "--tag=t1", "--tag=t2"])
        );
        assert_eq!(
            run(&["restic", "backup", "--hostname", "a", "-H", "b"]),
            line(&["restic", "backup", "--host=b"])
        );
    }

    #[test]
    fn booleans_counts_and_numbers() {
        assert_eq!(
            run(&["restic", "backup", "--json=false", "--force=true", "-vv"]),
            line(&["restic", "backup", "--force", "--verbose", "--verbose"])
        );
        assert_eq!(
            run(&[
                "restic",
                "snapshots",
                "-v",
                "--verbose=1",
                "--latest",
                "0x10"
            ]),
            line(&["restic", "snapshots", "--verbose", "--latest=16"])
        );
        assert_eq!(
            failure(&["restic", "backup", "--json=maybe"]),
            "invalid argument \"maybe\" for \"--json\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax"
        );
        assert_eq!(
            failure(&["restic", "snapshots", "--latest", "x"]),
            "invalid argument \"x\" for \"--latest\" flag: strconv.ParseUint: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            failure(&["restic", "snapshots", "--limit-upload=99999999999999999999"]),
            "invalid argument \"99999999999999999999\" for \"--limit-upload\" flag: strconv.ParseInt: parsing \"99999999999999999999\": value out of range"
        );
    }

    #[test]
    fn pflag_error_wording() {
        assert_eq!(
            failure(&["restic", "backup", "--foo"]),
            "unknown flag: --foo"
        );
        assert_eq!(
            failure(&["restic", "backup", "-fz"]),
            "unknown shorthand flag: 'z' in -fz"
        );
        assert_eq!(
            failure(&["restic", "backup", "--repo"]),
            "flag needs an argument: --repo"
        );
        assert_eq!(
            failure(&["restic", "backup", "-r"]),
            "flag needs an argument: 'r' in -r"
        );
        assert_eq!(
            failure(&["restic", "backup", "---x"]),
            "bad flag syntax: ---x"
        );
        let json = interpret(&tree(), &line(&["restic", "backup", "--json", "--nope"]));
        assert_eq!(json, Err(ParseFailure::new("unknown flag: --nope", true)));
    }

    #[test]
    fn unknown_command_suggests() {
        assert_eq!(
            failure(&["restix", "bakup"]),
            "unknown command \"bakup\" for \"restix\"\n\nDid you mean this?\n\tbackup\n"
        );
        assert_eq!(
            failure(&["restic", "zzzzzz"]),
            "unknown command \"zzzzzz\" for \"restic\""
        );
        // Deprecated commands are not suggested.
        assert_eq!(suggestions(&tree(), "rebuild"), "");
        assert_eq!(
            suggestions(&tree(), "snap"),
            "\n\nDid you mean this?\n\tsnapshots\n"
        );
    }

    #[test]
    fn help_requests() {
        let help = |words: &[&str]| interpret(&tree(), &line(words));
        assert_eq!(help(&["restic"]), Ok(Request::Help { path: vec![] }));
        assert_eq!(
            help(&["restic", "backup", "--help"]),
            Ok(Request::Help {
                path: line(&["backup"])
            })
        );
        assert_eq!(
            help(&["restic", "-h", "backup"]),
            Ok(Request::Help {
                path: line(&["backup"])
            })
        );
        assert_eq!(
            help(&["restic", "help", "key", "list"]),
            Ok(Request::Help {
                path: line(&["key", "list"])
            })
        );
        assert_eq!(
            help(&["restic", "help", "nope"]),
            Ok(Request::UnknownHelpTopic {
                topic: line(&["nope"])
            })
        );
        assert_eq!(
            help(&["restic", "key", "lst"]),
            Ok(Request::Help {
                path: line(&["key"])
            })
        );
        assert_eq!(
            run(&["restic", "key", "list", "-r", "R"]),
            line(&["restic", "key", "list", "--repo=R"])
        );
    }

    #[test]
    fn deprecation_notes() {
        match interpret(&tree(), &line(&["restic", "rebuild-index"])) {
            Ok(Request::Run { warnings, .. }) => assert_eq!(
                warnings,
                vec!["Command \"rebuild-index\" is deprecated, Use \"repair index\" instead"]
            ),
            other => panic!("{other:?}"),
        }
        match interpret(&tree(), &line(&["restic", "backup", "--hostname", "h"])) {
            Ok(Request::Run { warnings, .. }) => {
                assert_eq!(
                    warnings,
                    vec!["Flag --hostname has been deprecated, use --host"]
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn go_integers() {
        assert_eq!(parse_go_integer("10", true), Ok(10));
        assert_eq!(parse_go_integer("-1", true), Ok(-1));
        assert_eq!(parse_go_integer("0x1f", false), Ok(31));
        assert_eq!(parse_go_integer("0b101", false), Ok(5));
        assert_eq!(parse_go_integer("010", false), Ok(8));
        assert_eq!(parse_go_integer("0o1_0", false), Ok(8));
        assert!(parse_go_integer("1_0", false).is_err());
        assert!(parse_go_integer("-1", false).is_err());
        assert!(parse_go_integer("", true).is_err());
    }
}

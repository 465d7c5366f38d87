//! Global option resolution: environment defaults, repository location and
//! password lookup (spec: cli §2–§4), extended `-o` options (§5.4), and the
//! shell-string splitter restic uses for `--password-command`.

use std::collections::BTreeMap;

use crate::args::GlobalOptions;
use crate::errors::{fatal, CliError};

/// Reads an environment variable; injectable so resolution is testable.
pub trait EnvLookup {
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl EnvLookup for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvLookup for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Flag value if given, else the env var; empty counts as unset (cobra
/// writes the env value into the flag's variable before parsing).
fn flag_or_env(flag: &Option<String>, env: &dyn EnvLookup, name: &str) -> Option<String> {
    flag.clone()
        .or_else(|| env.var(name))
        .filter(|value| !value.is_empty())
}

/// Verbosity level (spec: cli §1.1): `-q` 0, default 1, `-v` 2, `-vv` 3.
pub fn verbosity(global: &GlobalOptions) -> Result<u8, CliError> {
    if global.quiet && global.verbose > 0 {
        return Err(fatal(
            "--quiet and --verbose cannot be specified at the same time",
        ));
    }
    if global.quiet {
        return Ok(0);
    }
    Ok(1u8.saturating_add(global.verbose.min(2)))
}

/// Decode a text file the way restic's `textfile.Read` does: strip a UTF-8
/// BOM, convert UTF-16 (with BOM) to UTF-8.
pub fn decode_text_file(bytes: &[u8]) -> String {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return String::from_utf8_lossy(rest).into_owned();
    }
    let utf16 = |rest: &[u8], little_endian: bool| -> String {
        let units: Vec<u16> = rest
            .chunks_exact(2)
            .map(|pair| match pair {
                [a, b] if little_endian => u16::from_le_bytes([*a, *b]),
                [a, b] => u16::from_be_bytes([*a, *b]),
                _ => 0xFFFD,
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, true);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, false);
    }
    String::from_utf8_lossy(bytes).into_owned()
}

/// Read a text file, reporting a missing one as `Fatal: <file> does not exist`.
fn read_text_file(path: &str) -> Result<String, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(decode_text_file(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(fatal(format!("{path} does not exist")))
        }
        Err(e) => Err(fatal(format!("unable to read {path}: {e}"))),
    }
}

/// The repository location (spec: cli §4 step 3).
pub fn resolve_repository(global: &GlobalOptions, env: &dyn EnvLookup) -> Result<String, CliError> {
    let repo = flag_or_env(&global.repo, env, "RESTIC_REPOSITORY");
    let repo_file = flag_or_env(&global.repository_file, env, "RESTIC_REPOSITORY_FILE");
    match (repo, repo_file) {
        (Some(_), Some(_)) => Err(fatal(
            "Options -r and --repository-file are mutually exclusive, please specify only one",
        )),
        (Some(repo), None) => Ok(repo),
        (None, Some(file)) => {
            let location = read_text_file(&file)?.trim().to_string();
            if location.is_empty() {
                return Err(fatal(
                    "Please specify repository location (-r or --repository-file)",
                ));
            }
            Ok(location)
        }
        (None, None) => Err(fatal(
            "Please specify repository location (-r or --repository-file)",
        )),
    }
}

/// Where the password came from, if it was resolved before opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// From `--password-file`, `--password-command` or `$RESTIC_PASSWORD`.
    Given(String),
    /// Nothing given: read from the terminal or stdin when needed.
    NotGiven,
    /// `--insecure-no-password`.
    Empty,
}

/// Resolve the password before opening the repository (spec: cli §4 step 2).
pub fn resolve_password(
    global: &GlobalOptions,
    env: &dyn EnvLookup,
) -> Result<PasswordSource, CliError> {
    let file = flag_or_env(&global.password_file, env, "RESTIC_PASSWORD_FILE");
    let command = flag_or_env(&global.password_command, env, "RESTIC_PASSWORD_COMMAND");
    let resolving_failed = |e: CliError| fatal(format!("Resolving password failed: {}", e.message));
    let password = match (file, command) {
        (Some(_), Some(_)) => {
            return Err(resolving_failed(fatal(
                "Password file and command are mutually exclusive options",
            )))
        }
        (None, Some(command)) => Some(run_password_command(&command).map_err(resolving_failed)?),
        (Some(file), None) => Some(
            read_text_file(&file)
                .map_err(resolving_failed)?
                .trim()
                .to_string(),
        ),
        // spec: cli §3: RESTIC_PASSWORD is not trimmed.
        (None, None) => env.var("RESTIC_PASSWORD").filter(|p| !p.is_empty()),
    };
    // spec: cli §4 step 4: an empty password from a file or command counts
    // as "not given"; the caller then reads stdin and refuses an empty one.
    let password = password.filter(|p| !p.is_empty());
    match (password, global.insecure_no_password) {
        (Some(_), true) => Err(fatal(
            "--insecure-no-password must not be specified together with providing a password via a cli option or environment variable",
        )),
        (Some(password), false) => Ok(PasswordSource::Given(password)),
        (None, true) => Ok(PasswordSource::Empty),
        (None, false) => Ok(PasswordSource::NotGiven),
    }
}

/// Run `--password-command` (split with the shell splitter, not a shell) and
/// return its trimmed stdout.
fn run_password_command(command: &str) -> Result<String, CliError> {
    let words = split_shell_strings(command).map_err(|e| CliError::plain(1, e.to_string()))?;
    let Some((program, args)) = words.split_first() else {
        return Err(CliError::plain(1, "command string is empty"));
    };
    let output = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| CliError::plain(1, format!("exec: \"{program}\": {e}")))?;
    if !output.status.success() {
        let code = output.status.code().unwrap_or(-1);
        return Err(CliError::plain(1, format!("exit status {code}")));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Shell splitting has one home, the backends' (restic's
/// `backend.SplitShellStrings`, which the sftp backend uses too).
pub use restix_engine::backend::shell_split::split_shell_strings;

/// Extended options (`-o key=value`), spec: cli §5.4.
pub type ExtendedOptions = BTreeMap<String, String>;

/// Parse `-o` values: comma-separated (CSV), split at the first `=`, key
/// lower-cased and trimmed, value trimmed.
pub fn parse_extended_options(raw: &[String]) -> Result<ExtendedOptions, CliError> {
    let mut options = ExtendedOptions::new();
    for argument in raw {
        for item in split_csv(argument) {
            let (key, value) = item.split_once('=').unwrap_or((item.as_str(), ""));
            let key = key.trim().to_lowercase();
            let value = value.trim().to_string();
            if key.is_empty() {
                return Err(fatal("empty key is not a valid option"));
            }
            if let Some(previous) = options.get(&key) {
                if *previous != value {
                    return Err(fatal(format!("key \"{key}\" present more than once")));
                }
            }
            options.insert(key, value);
        }
    }
    Ok(options)
}

/// pflag StringSlice splits one argument as a CSV record: commas separate,
/// double quotes group (`-o "sftp.command=ssh -o a=b,c"` needs quotes).
fn split_csv(argument: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut in_quotes = false;
    let mut chars = argument.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => fields.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    fields.push(current);
    fields
}

/// Options of one backend namespace (`sftp.connections` → `connections`).
/// Unknown keys in the namespace are an error; other namespaces are ignored.
pub fn options_for_scheme(
    options: &ExtendedOptions,
    scheme: &str,
    known: &[&str],
) -> Result<BTreeMap<String, String>, CliError> {
    restix_engine::backend::registry::options_for_scheme(options, scheme, known)
        .map_err(|e| fatal(e.to_string()))
}

/// Parse a Go `strconv.ParseUint(s, 0, ...)` number (decimal, `0x`, `0o`, `0b`, leading `0` octal).
pub fn parse_go_uint(value: &str) -> Result<u64, CliError> {
    restix_engine::backend::options::parse_go_uint(value).ok_or_else(|| {
        CliError::plain(
            1,
            restix_engine::backend::options::go_uint_syntax_error(value),
        )
    })
}

/// Number of CPU worker threads: `--threads`, else `$GOMAXPROCS` (spec: cli
/// §6.3), else the available parallelism.
pub fn worker_threads(global: &GlobalOptions, env: &dyn EnvLookup) -> usize {
    if let Some(threads) = global.threads.filter(|t| *t > 0) {
        return threads;
    }
    if let Some(limit) = env
        .var("GOMAXPROCS")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return limit;
    }
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Pack size in bytes from `--pack-size`/`$RESTIC_PACK_SIZE` (MiB); `None` = default.
pub fn pack_size_bytes(
    global: &GlobalOptions,
    env: &dyn EnvLookup,
) -> Result<Option<u64>, CliError> {
    let from_flag = global.pack_size.is_some();
    let Some(raw) = flag_or_env(&global.pack_size, env, "RESTIC_PACK_SIZE") else {
        return Ok(None);
    };
    let mib: u64 = match raw.trim().parse() {
        Ok(v) => v,
        Err(_) if from_flag => {
            return Err(CliError::plain(
                1,
                format!("invalid argument \"{raw}\" for \"--pack-size\" flag: strconv.ParseUint: parsing \"{raw}\": invalid syntax"),
            ))
        }
        Err(_) => {
            return Err(fatal(format!(
                "invalid value for RESTIC_PACK_SIZE \"{raw}\": strconv.ParseUint: parsing \"{raw}\": invalid syntax"
            )))
        }
    };
    if mib == 0 {
        return Ok(None);
    }
    if mib < 4 {
        return Err(fatal("pack size smaller than minimum of 4 MiB"));
    }
    if mib > 128 {
        return Err(fatal("pack size larger than limit of 128 MiB"));
    }
    Ok(Some(mib * 1024 * 1024))
}

/// Compression mode name from `--compression`/`$RESTIC_COMPRESSION`, validated.
pub fn compression_mode(global: &GlobalOptions, env: &dyn EnvLookup) -> Result<String, CliError> {
    let from_flag = global.compression.is_some();
    let mode = flag_or_env(&global.compression, env, "RESTIC_COMPRESSION")
        .unwrap_or_else(|| "auto".to_string());
    match mode.as_str() {
        "auto" | "off" | "max" | "fastest" | "better" => Ok(mode),
        _ if from_flag => Err(CliError::plain(
            1,
            format!("invalid argument \"{mode}\" for \"--compression\" flag: invalid compression mode \"{mode}\", must be one of (auto|off|fastest|better|max)"),
        )),
        _ => Err(fatal(format!(
            "invalid value for RESTIC_COMPRESSION \"{mode}\": invalid compression mode \"{mode}\", must be one of (auto|off|fastest|better|max)"
        ))),
    }
}

/// Resolve the transport flags in place, as restic's global.go does before
/// any backend opens (the backends read them from [`GlobalOptions`]):
/// `--cacert` values are comma lists (pflag StringSlice), and without the
/// flag `$RESTIC_CACERT` (also a comma list) names the files;
/// `$RESTIC_TLS_CLIENT_CERT` and `$RESTIC_HTTP_USER_AGENT` fill the flags
/// left empty; `--stuck-request-timeout` must be a Go duration (default 5m).
pub fn resolve_transport(global: &mut GlobalOptions, env: &dyn EnvLookup) -> Result<(), CliError> {
    let given = std::mem::take(&mut global.cacert);
    let mut files: Vec<String> = given.iter().flat_map(|v| split_csv(v)).collect();
    if given.is_empty() {
        if let Some(list) = env.var("RESTIC_CACERT").filter(|v| !v.is_empty()) {
            files = list.split(',').map(str::to_string).collect();
        }
    }
    global.cacert = files;
    if global.tls_client_cert.as_deref().unwrap_or("").is_empty() {
        global.tls_client_cert = env.var("RESTIC_TLS_CLIENT_CERT").filter(|v| !v.is_empty());
    }
    if global.http_user_agent.as_deref().unwrap_or("").is_empty() {
        global.http_user_agent = env.var("RESTIC_HTTP_USER_AGENT").filter(|v| !v.is_empty());
    }
    let timeout = global.stuck_request_timeout.as_deref().unwrap_or("5m");
    if parse_go_duration(timeout).is_none() {
        return Err(CliError::plain(
            1,
            format!("invalid argument \"{timeout}\" for \"--stuck-request-timeout\" flag: time: invalid duration \"{timeout}\""),
        ));
    }
    Ok(())
}

/// `--stuck-request-timeout` as a duration (default 5 minutes).
#[allow(dead_code)]
pub fn stuck_request_timeout(global: &GlobalOptions) -> std::time::Duration {
    global
        .stuck_request_timeout
        .as_deref()
        .and_then(parse_go_duration)
        .unwrap_or(std::time::Duration::from_secs(300))
}

/// Parse a Go duration (`time.ParseDuration`) such as `5m`, `1h30m`,
/// `1.5s`, `300ms`.
pub fn parse_go_duration(text: &str) -> Option<std::time::Duration> {
    if text == "0" {
        return Some(std::time::Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        rest = tail;
    }
    Some(std::time::Duration::from_secs_f64(total))
}

/// Sizes have one home, the engine's (`ui.ParseBytes`, spec: cli §1.4).
pub use restix_engine::size::parse_size;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn repository_precedence_and_errors() {
        let mut g = GlobalOptions::default();
        assert_eq!(
            resolve_repository(&g, &env(&[])).unwrap_err().to_string(),
            "Fatal: Please specify repository location (-r or --repository-file)"
        );
        assert_eq!(
            resolve_repository(&g, &env(&[("RESTIC_REPOSITORY", "/r")])).unwrap(),
            "/r"
        );
        g.repo = Some("/flag".into());
        assert_eq!(
            resolve_repository(&g, &env(&[("RESTIC_REPOSITORY", "/r")])).unwrap(),
            "/flag"
        );
        // The env file + flag repo conflict, like cobra's env-into-flag defaults.
        assert_eq!(
            resolve_repository(&g, &env(&[("RESTIC_REPOSITORY_FILE", "/f")]))
                .unwrap_err()
                .to_string(),
            "Fatal: Options -r and --repository-file are mutually exclusive, please specify only one"
        );
        let dir = std::env::temp_dir().join(format!("restix-cli-repofile-{}", std::process::id()));
        std::fs::write(&dir, b"\xEF\xBB\xBF  /from/file \n").unwrap();
        let g = GlobalOptions {
            repository_file: Some(dir.to_string_lossy().into_owned()),
            ..Default::default()
        };
        assert_eq!(resolve_repository(&g, &env(&[])).unwrap(), "/from/file");
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(
            resolve_repository(&g, &env(&[])).unwrap_err().to_string(),
            format!("Fatal: {} does not exist", dir.display())
        );
    }

    #[test]
    fn password_precedence_and_errors() {
        let g = GlobalOptions::default();
        assert_eq!(
            resolve_password(&g, &env(&[])).unwrap(),
            PasswordSource::NotGiven
        );
        // RESTIC_PASSWORD is not trimmed.
        assert_eq!(
            resolve_password(&g, &env(&[("RESTIC_PASSWORD", " pw")])).unwrap(),
            PasswordSource::Given(" pw".into())
        );
        let file = std::env::temp_dir().join(format!("restix-cli-pw-{}", std::process::id()));
        std::fs::write(&file, "  secret\n").unwrap();
        let g = GlobalOptions {
            password_file: Some(file.to_string_lossy().into_owned()),
            ..Default::default()
        };
        // The file wins over RESTIC_PASSWORD and is trimmed.
        assert_eq!(
            resolve_password(&g, &env(&[("RESTIC_PASSWORD", "other")])).unwrap(),
            PasswordSource::Given("secret".into())
        );
        assert_eq!(
            resolve_password(&g, &env(&[("RESTIC_PASSWORD_COMMAND", "echo x")]))
                .unwrap_err()
                .to_string(),
            "Fatal: Resolving password failed: Fatal: Password file and command are mutually exclusive options"
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            resolve_password(&g, &env(&[])).unwrap_err().to_string(),
            format!(
                "Fatal: Resolving password failed: Fatal: {} does not exist",
                file.display()
            )
        );
        let g = GlobalOptions {
            password_command: Some("echo '  from command  '".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_password(&g, &env(&[("RESTIC_PASSWORD", "x")])).unwrap(),
            PasswordSource::Given("from command".into())
        );
        let g = GlobalOptions {
            password_command: Some("false".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_password(&g, &env(&[])).unwrap_err().to_string(),
            "Fatal: Resolving password failed: exit status 1"
        );
        let g = GlobalOptions {
            insecure_no_password: true,
            ..Default::default()
        };
        assert_eq!(
            resolve_password(&g, &env(&[])).unwrap(),
            PasswordSource::Empty
        );
        assert!(resolve_password(&g, &env(&[("RESTIC_PASSWORD", "x")])).is_err());
    }

    #[test]
    fn verbosity_levels() {
        let mut g = GlobalOptions::default();
        assert_eq!(verbosity(&g).unwrap(), 1);
        g.verbose = 2;
        assert_eq!(verbosity(&g).unwrap(), 3);
        g.quiet = true;
        assert_eq!(
            verbosity(&g).unwrap_err().to_string(),
            "Fatal: --quiet and --verbose cannot be specified at the same time"
        );
        g.verbose = 0;
        assert_eq!(verbosity(&g).unwrap(), 0);
    }

    #[test]
    fn extended_options() {
        let o = parse_extended_options(&["sftp.connections=8".into(), "A.B = c ,x.y=1".into()])
            .unwrap();
        assert_eq!(o.get("sftp.connections").map(String::as_str), Some("8"));
        assert_eq!(o.get("a.b").map(String::as_str), Some("c"));
        assert_eq!(o.get("x.y").map(String::as_str), Some("1"));
        assert_eq!(
            parse_extended_options(&["=1".into()])
                .unwrap_err()
                .to_string(),
            "Fatal: empty key is not a valid option"
        );
        assert_eq!(
            parse_extended_options(&["a.b=1".into(), "a.b=2".into()])
                .unwrap_err()
                .to_string(),
            "Fatal: key \"a.b\" present more than once"
        );
        let o = parse_extended_options(&["\"sftp.command=ssh -o a=b,c\"".into()]).unwrap();
        assert_eq!(
            o.get("sftp.command").map(String::as_str),
            Some("ssh -o a=b,c")
        );
        let all = parse_extended_options(&[
            "sftp.connections=3".into(),
            "local.connections=1".into(),
            "foo=1".into(),
        ])
        .unwrap();
        let sftp = options_for_scheme(&all, "sftp", &["connections", "command", "args"]).unwrap();
        assert_eq!(sftp.len(), 1);
        let bogus = parse_extended_options(&["local.bogus=1".into()]).unwrap();
        assert_eq!(
            options_for_scheme(&bogus, "local", &["connections"])
                .unwrap_err()
                .to_string(),
            "Fatal: option local.bogus is not known"
        );
    }

    #[test]
    fn transport_flags() {
        let mut g = GlobalOptions {
            cacert: vec!["/a.pem,/b.pem".into(), "/c.pem".into()],
            ..Default::default()
        };
        resolve_transport(&mut g, &env(&[("RESTIC_CACERT", "/x.pem")])).unwrap();
        assert_eq!(g.cacert, vec!["/a.pem", "/b.pem", "/c.pem"]);
        let mut g = GlobalOptions::default();
        resolve_transport(
            &mut g,
            &env(&[
                ("RESTIC_CACERT", "/x.pem,/y.pem"),
                ("RESTIC_TLS_CLIENT_CERT", "/client.pem"),
                ("RESTIC_HTTP_USER_AGENT", "agent/1"),
            ]),
        )
        .unwrap();
        assert_eq!(g.cacert, vec!["/x.pem", "/y.pem"]);
        assert_eq!(g.tls_client_cert.as_deref(), Some("/client.pem"));
        assert_eq!(g.http_user_agent.as_deref(), Some("agent/1"));
        assert_eq!(
            stuck_request_timeout(&g),
            std::time::Duration::from_secs(300)
        );
        let mut g = GlobalOptions {
            stuck_request_timeout: Some("soon".into()),
            ..Default::default()
        };
        assert_eq!(
            resolve_transport(&mut g, &env(&[])).unwrap_err().to_string(),
            "invalid argument \"soon\" for \"--stuck-request-timeout\" flag: time: invalid duration \"soon\""
        );
        let g = GlobalOptions {
            stuck_request_timeout: Some("90s".into()),
            ..Default::default()
        };
        assert_eq!(
            stuck_request_timeout(&g),
            std::time::Duration::from_secs(90)
        );
    }

    #[test]
    fn numbers_and_sizes() {
        assert_eq!(parse_go_uint("0x10").unwrap(), 16);
        assert_eq!(parse_go_uint("010").unwrap(), 8);
        assert_eq!(
            parse_go_uint("x").unwrap_err().to_string(),
            "strconv.ParseUint: parsing \"x\": invalid syntax"
        );
        assert_eq!(parse_size("10G").unwrap(), 10 << 30);
        assert_eq!(parse_size("5").unwrap(), 5);
        assert!(parse_size("x").is_err());
        let g = GlobalOptions::default();
        assert_eq!(worker_threads(&g, &env(&[("GOMAXPROCS", "3")])), 3);
        let g = GlobalOptions {
            threads: Some(5),
            ..Default::default()
        };
        assert_eq!(worker_threads(&g, &env(&[("GOMAXPROCS", "3")])), 5);
        let g = GlobalOptions {
            pack_size: Some("2".into()),
            ..Default::default()
        };
        assert!(pack_size_bytes(&g, &env(&[])).is_err());
        assert_eq!(
            pack_size_bytes(
                &GlobalOptions::default(),
                &env(&[("RESTIC_PACK_SIZE", "32")])
            )
            .unwrap(),
            Some(32 << 20)
        );
        assert_eq!(
            compression_mode(&GlobalOptions::default(), &env(&[])).unwrap(),
            "auto"
        );
        assert!(compression_mode(
            &GlobalOptions::default(),
            &env(&[("RESTIC_COMPRESSION", "x")])
        )
        .is_err());
    }
}

//! Splitting a command string into words as restic's
//! `backend.SplitShellStrings` does (spec: cli §4): the one splitter for
//! `--password-command` (CLI) and `-o sftp.command`/`sftp.args` (sftp
//! backend). No shell is involved: no variables, globs or operators.

/// Why a command string could not be split; the texts are restic's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellSplitError {
    /// A `'` without its closing partner.
    #[error("single-quoted string not terminated")]
    SingleQuoteOpen,
    /// A `"` without its closing partner.
    #[error("double-quoted string not terminated")]
    DoubleQuoteOpen,
    /// Nothing but whitespace.
    #[error("command string is empty")]
    Empty,
}

/// Split a command string like restic's `SplitShellStrings` (spec: cli §4):
/// whitespace separates fields, `'…'`/`"…"` group, a backslash suppresses
/// quote recognition of the next character (and is itself a separator).
pub fn split_shell_strings(input: &str) -> Result<Vec<String>, ShellSplitError> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let flush = |current: &mut String, fields: &mut Vec<String>| {
        if !current.is_empty() {
            fields.push(std::mem::take(current));
        }
    };
    for c in input.chars() {
        if escaped {
            escaped = false;
            current.push(c);
            continue;
        }
        match quote {
            Some(q) if c == q => {
                quote = None;
                flush(&mut current, &mut fields);
            }
            Some(_) => current.push(c),
            None => {
                if c == '\\' {
                    escaped = true;
                    flush(&mut current, &mut fields);
                } else if c == '\'' || c == '"' {
                    quote = Some(c);
                    flush(&mut current, &mut fields);
                } else if c.is_whitespace() {
                    flush(&mut current, &mut fields);
                } else {
                    current.push(c);
                }
            }
        }
    }
    match quote {
        Some('\'') => return Err(ShellSplitError::SingleQuoteOpen),
        Some(_) => return Err(ShellSplitError::DoubleQuoteOpen),
        None => {}
    }
    flush(&mut current, &mut fields);
    if fields.is_empty() {
        return Err(ShellSplitError::Empty);
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_splitting() {
        assert_eq!(split_shell_strings("echo pw").unwrap(), vec!["echo", "pw"]);
        assert_eq!(
            split_shell_strings("ssh -i 'my key' \"a b\"").unwrap(),
            vec!["ssh", "-i", "my key", "a b"]
        );
        assert_eq!(split_shell_strings("a\\ b").unwrap(), vec!["a", " b"]);
        assert_eq!(
            split_shell_strings("'x").unwrap_err().to_string(),
            "single-quoted string not terminated"
        );
        assert_eq!(
            split_shell_strings("\"x").unwrap_err().to_string(),
            "double-quoted string not terminated"
        );
        assert_eq!(
            split_shell_strings("  ").unwrap_err().to_string(),
            "command string is empty"
        );
    }
}

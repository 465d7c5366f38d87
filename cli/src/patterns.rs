//! Pattern files of `--exclude-file`, `--iexclude-file`, `--include-file`
//! and `--iinclude-file`, shared by `backup`, `restore` and `rewrite`.

use crate::errors::fatal;

/// Patterns from a file: one per line, trimmed, `#` comments and blank lines
/// skipped (restic's `readPatternsFromFiles`).
pub fn read_pattern_file(path: &str) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| fatal(format!("failed to read pattern file {path}: {e}")))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(expand_env)
        .collect())
}

/// `$VAR`/`${VAR}` expansion with `$$` = `$` (restic's exclude files).
fn expand_env(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        match chars.peek() {
            Some('$') => {
                chars.next();
                out.push('$');
            }
            Some('{') => {
                chars.next();
                let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                out.push_str(&std::env::var(&name).unwrap_or_default());
            }
            _ => {
                let mut name = String::new();
                while let Some(&n) = chars.peek() {
                    if n.is_ascii_alphanumeric() || n == '_' {
                        name.push(n);
                        chars.next();
                    } else {
                        break;
                    }
                }
                if name.is_empty() {
                    out.push('$');
                } else {
                    out.push_str(&std::env::var(&name).unwrap_or_default());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        std::env::set_var("RESTIX_TEST_VAR", "x");
        assert_eq!(
            expand_env("/a/$RESTIX_TEST_VAR/${RESTIX_TEST_VAR}/$$"),
            "/a/x/x/$"
        );
    }
}

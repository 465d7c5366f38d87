//! Error texts the way restic (Go) prints them, so messages match restic's.

/// The OS error text of `e` the way Go prints it: lower-case, without
/// Rust's " (os error N)" suffix (`no such file or directory`).
pub fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => text.get(..i).unwrap_or(&text).to_string(),
        _ => text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

/// Go's `*PathError` text: `op path: error`.
pub fn path_error(op: &str, path: &std::path::Path, e: &std::io::Error) -> String {
    format!("{op} {}: {}", path.display(), io_text(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_go() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_text(&e), "no such file or directory");
        assert_eq!(
            path_error("mkdir", std::path::Path::new("/x"), &e),
            "mkdir /x: no such file or directory"
        );
        assert_eq!(io_text(&std::io::Error::other("Custom")), "custom");
    }
}

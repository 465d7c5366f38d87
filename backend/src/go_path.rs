//! Go's `path` package rules that restic's behaviour depends on: repository
//! locations (`sftp:` paths, `s3:` prefixes) and `find` patterns are cleaned
//! with `path.Clean` before use, so restix must clean them the same way to
//! reach the same files and objects.

/// Go's `path.Clean`: collapse `//`, drop `.` elements, resolve `..`
/// lexically (a rooted path never climbs above `/`, a relative one keeps its
/// leading `..`), no trailing slash; an empty result is `.`.
///
/// ```
/// use restix_backend::go_path::clean;
/// assert_eq!(clean("a//b/./c/.."), "a/b");
/// assert_eq!(clean("/../x/"), "/x");
/// assert_eq!(clean("./../y"), "../y");
/// assert_eq!(clean(""), ".");
/// ```
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for element in path.split('/') {
        match element {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn matches_go_path_clean() {
        // Pairs from Go's path.Clean documentation and edge cases.
        for (input, want) in [
            ("", "."),
            ("/", "/"),
            ("abc", "abc"),
            ("abc/def/", "abc/def"),
            ("a/b/c/.", "a/b/c"),
            ("a/b/c/..", "a/b"),
            ("../../abc", "../../abc"),
            ("/../abc", "/abc"),
            ("abc/./../def", "def"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("abc/../..", ".."),
            ("./", "."),
            ("//", "/"),
        ] {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }
}

//! Exit status and text for errors of `restix-engine` (spec: cli §8).

/// Classify an engine error found anywhere in the chain; `None` if unknown.
pub fn classify_engine_error(_error: &anyhow::Error) -> Option<(i32, String)> {
    None
}

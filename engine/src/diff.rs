//! diff: what changed between two snapshots.

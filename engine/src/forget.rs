//! forget: keep policies (`--keep-*`), grouping, and which snapshots to remove.

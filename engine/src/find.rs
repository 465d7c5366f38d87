//! find: search snapshots for files by name pattern, or for blob/tree/pack IDs.

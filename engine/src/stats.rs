//! stats: sizes and counts of snapshots (restore-size, files-by-contents, raw-data, blobs-per-file).

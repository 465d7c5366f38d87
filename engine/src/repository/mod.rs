//! Repository: keys, config, index, locks, blob load/save, pack writing.

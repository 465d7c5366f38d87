//! Snapshot selection: IDs and prefixes, `latest`, `--tag`/`--host`/`--path` filters.

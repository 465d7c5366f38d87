//! copy: transfer snapshots between repositories with different keys.

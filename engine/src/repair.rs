//! repair: rebuild the index from pack headers; rewrite snapshots with missing data.

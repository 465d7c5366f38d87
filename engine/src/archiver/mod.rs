//! Archiver: turns files and directories into trees, blobs and a snapshot.

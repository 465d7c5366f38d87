//! Tree walking: visit every node of a snapshot (ls, find, restore planning).

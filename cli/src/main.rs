//! restix command line.
fn main() {}

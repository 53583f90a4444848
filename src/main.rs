//! The `corecache` binary.
fn main() {}

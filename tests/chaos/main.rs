//! The chaos run (being written).
fn main() {}

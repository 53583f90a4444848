//! loadgen: placeholder until the loadgen issue fills it in.
fn main() {}

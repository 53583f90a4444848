//! The checks behind corecache's fuzz targets.
//!
//! Each target hands its input to one function here, which drives a part
//! of corecache through its public API and panics when an invariant breaks:
//!
//! - [`text::check`]: the text parser (`protocol::parse`, and
//!   `protocol::parse_rest` for long `get` lines), fed as a connection
//!   would be, in reads cut at arbitrary points. The `text` and `meta`
//!   targets both use it; they differ in seed corpus and dictionary.
//! - [`binary::check`]: the binary parser, the same way, and whatever the
//!   cuts, the same requests.
//! - [`shard::check`]: a `storage::Shard` driven by an operation sequence
//!   decoded from the input, against [`model`], the reference model of a
//!   shard that corecache's storage tests drive with proptest too.
//!
//! The code is plain Rust with no dependency but corecache, so the main
//! crate's test suite (`tests/fuzz_inputs.rs`) includes it to replay the
//! seed corpus and every input a fuzzer ever found.

pub mod binary;
pub mod model;
pub mod shard;
pub mod split;
pub mod text;

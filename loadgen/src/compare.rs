//! The `compare` experiment harness (placeholder while the client settles).

/// Flags of `loadgen compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {}

/// Runs the comparison.
pub fn compare(_a: &CompareArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}

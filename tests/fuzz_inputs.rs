//! The fuzz targets' checks, run on the inputs kept in the repository: the
//! seed corpus (`fuzz/corpus/<target>/`) and every input a fuzzer found
//! (`fuzz/regressions/<target>/`), so the normal test suite keeps them
//! passing without libFuzzer. The checks are the fuzz crate's own code
//! (`fuzz/src/`), included here as a module; each finding also has a unit
//! test beside the code it concerns.

#[path = "../fuzz/src/lib.rs"]
mod fuzz;

use std::path::Path;

/// Runs `check` on every file kept for `target`; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let input = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| check(&input));
            assert!(result.is_ok(), "{} fails its check", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn text_inputs_pass_the_text_checks() {
    assert!(replay("text", fuzz::text::check) >= 20);
}

#[test]
fn meta_inputs_pass_the_text_checks() {
    assert!(replay("meta", fuzz::text::check) >= 10);
}

#[test]
fn binary_inputs_pass_the_binary_checks() {
    assert!(replay("binary", fuzz::binary::check) >= 20);
}

#[test]
fn shard_inputs_pass_the_model_checks() {
    assert!(replay("shard", fuzz::shard::check) >= 15);
}

//! Tells the tests whether the original tm-librarian topology corpus is beside this checkout.
//!
//! `tests/book_register.rs` cross-checks the original's config files
//! (`../shared/data/tm-configfiles`, relative to the workspace) where they exist: on the
//! developers' machines and in CI. A plain `git clone` has no `../shared`, so there those tests
//! must not run, and must not count as passed either: with cfg `original_corpus` unset they are
//! `#[ignore]`d with the reason, and cargo lists them as ignored.
//!
//! Cargo re-runs this script when the corpus changes or goes away. It is not watched while it is
//! absent: cargo treats a watched path that does not exist as always changed, which would re-run
//! this script and rebuild the whole crate on every build. A corpus that appears later is
//! noticed by the test `original_corpus_gate_matches_the_disk`, which then fails and says to
//! `touch topology/build.rs`.

use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(original_corpus)");
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let corpus = Path::new(&manifest_dir).join("../../shared/data/tm-configfiles");
    if corpus.is_dir() {
        println!("cargo::rerun-if-changed={}", corpus.display());
        println!("cargo::rustc-cfg=original_corpus");
    }
}

//! The C ABI: FAME's hello_fabric in spirit, built with `cc` against `lfs_direct.h` and
//! `liblfs_direct.so`, stores uname() straight into FAM on one node and reads it on the other.

use fame_tests::*;
use std::path::PathBuf;
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../lfs-node/direct")
}

#[test]
fn hello_fabric_in_c() {
    let c = Cluster::two(&[]);
    // Cargo rebuilds deps/liblfs_direct.so for this test (lfs-direct is a dependency); the copy
    // in target/debug is refreshed only by `cargo build -p lfs-direct`.
    let built = bin_dir().join("deps/liblfs_direct.so");
    assert!(
        built.exists(),
        "{} is missing: build with `cargo build -p lfs-direct`",
        built.display()
    );
    // A private copy, so that no other liblfs_direct.so on a library path can stand in for it.
    let lib_dir = c.dir.path().join("lib");
    std::fs::create_dir(&lib_dir).unwrap();
    std::fs::copy(&built, lib_dir.join("liblfs_direct.so")).unwrap();
    let exe = c.dir.path().join("hello_fabric");
    run_ok(
        "cc",
        Command::new("cc")
            .args(["-Wall", "-Werror", "-I"])
            .arg(crate_dir().join("include"))
            .arg(crate_dir().join("examples/hello_fabric.c"))
            .arg("-L")
            .arg(&lib_dir)
            .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
            .args(["-llfs_direct", "-o"])
            .arg(&exe),
    );

    let run = |args: &[&str]| {
        // cargo's LD_LIBRARY_PATH (target/debug first) would win over the rpath.
        let o = Command::new(&exe)
            .args(args)
            .env("LD_LIBRARY_PATH", &lib_dir)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let f1 = c.node(0).path("hello").display().to_string();
    let f2 = c.node(1).path("hello").display().to_string();
    let (code, wrote, err) = run(&["write", &f1]);
    assert_eq!(code, Some(0), "{err}");
    let host = nix_uname();
    assert!(wrote.contains(&host), "{wrote}");
    let (code, read, err) = run(&["read", &f2]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(read, wrote);
    // The bytes are in the file for read(2) too.
    let raw = std::fs::read(&f2).unwrap();
    assert!(String::from_utf8_lossy(&raw).contains("Linux"));

    // Errors come back with errno and a message naming the input.
    let (code, _, err) = run(&["read", &c.node(1).path("missing").display().to_string()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("missing") && err.contains("errno 2"), "{err}");
    let (code, _, err) = run(&["read", c.fam.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not on an lfs-node mount"), "{err}");
}

fn nix_uname() -> String {
    // SAFETY: utsname is a plain C struct for which all-zero bytes are a valid value.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: u is a valid, writable utsname.
    assert_eq!(unsafe { libc::uname(&mut u) }, 0);
    // SAFETY: uname(2) succeeded, so nodename holds a NUL-terminated string inside u.
    unsafe { std::ffi::CStr::from_ptr(u.nodename.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

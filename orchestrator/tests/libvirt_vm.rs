//! The libvirt backend end to end with real VMs (QEMU under TCG, on the host's root over
//! virtiofs and on the minimal initramfs) and a real libvirtd, all inside a network and mount
//! namespace this test creates: `tests/vm/two_nodes.sh` does the work (see its header); this test
//! runs it under `unshare -n -m --propagation private` and checks it reached its end. Needs root, libvirt, QEMU and the cloud kernel (scripts/setup.sh installs
//! them); it fails, rather than skips, when they are missing, so CI cannot pass without it.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn two_vm_nodes_share_lfs_and_fam_through_ivshmem() {
    let fame = PathBuf::from(env!("CARGO_BIN_EXE_fame"));
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vm/two_nodes.sh");
    let work = tempfile::Builder::new()
        .prefix("fame-vm-test")
        .tempdir()
        .expect("temporary directory");
    // Programs the nodes run from the host's root, outside the test's /tmp folder: any host
    // folder will do.
    let host_dir = tempfile::Builder::new()
        .prefix("fame-vm-test")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temporary directory under the target dir");
    let out = Command::new("unshare")
        .args(["-n", "-m", "--propagation", "private", "bash"])
        .arg(&script)
        .env("FAME", &fame)
        .env("WORK", work.path())
        .env("HOSTDIR", host_dir.path())
        .output()
        .expect("cannot run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("VM-TEST-OK"),
        "{} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        script.display(),
        out.status
    );
}

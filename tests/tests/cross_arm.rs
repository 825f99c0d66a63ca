//! The gateway builds: `cross/build.sh build` makes static aarch64 and armv7 binaries with
//! Debian's Rust 1.85, and each, run under qemu-user, must print exactly what the x86-64 build
//! prints for every fixture capture. Needs the toolchain of `cross/build.sh install`.

use edgeprobe_tests::{edgeprobe_bin, prerequisite, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGETS: [(&str, &str); 2] =
    [("aarch64-unknown-linux-gnu", "qemu-aarch64"), ("armv7-unknown-linux-gnueabihf", "qemu-arm")];

/// The aarch64 size goal: one file that fits a gateway's flash.
const AARCH64_MAX_BYTES: u64 = 3 << 20;

fn toolchain_ready() -> bool {
    let rustc_185 = Command::new("/usr/bin/rustc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("rustc 1.85."));
    let tool = |t: &str| {
        Command::new("sh").args(["-c", &format!("command -v {t}")]).output().is_ok_and(|o| o.status.success())
    };
    rustc_185
        && TARGETS
            .iter()
            .all(|(triple, qemu)| Path::new("/usr/lib/rustlib").join(triple).join("lib").is_dir() && tool(qemu))
        && tool("aarch64-linux-gnu-gcc")
        && tool("arm-linux-gnueabihf-gcc")
        && tool("file")
}

fn binary(triple: &str) -> PathBuf {
    workspace_root().join("target/cross").join(triple).join("gateway/edgeprobe")
}

/// stdout of `edgeprobe replay FILE --events --reports`, and the peak resident memory of the
/// process (qemu included, when emulated) in KiB.
fn replay(runner: &[&str], capture: &Path) -> (Vec<u8>, u64) {
    // Python reports the child's peak RSS; Rust's std has no wait4.
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)\n\
                  sys.stdout.buffer.write(r.stdout)\n\
                  sys.stderr.write('maxrss=%d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                  sys.exit(r.returncode)";
    let out = Command::new("python3")
        .args(["-c", script])
        .args(runner)
        .args(["replay", capture.to_str().unwrap(), "--events", "--reports"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{runner:?} on {}: {stderr}", capture.display());
    let rss = stderr.lines().find_map(|l| l.strip_prefix("maxrss=")).and_then(|v| v.parse().ok()).unwrap();
    (out.stdout, rss)
}

#[test]
fn arm_builds_print_exactly_what_the_x86_64_build_prints() {
    if !prerequisite(toolchain_ready(), "the ARM cross toolchain and qemu-user (run `cross/build.sh install` as root)")
    {
        return;
    }
    let build = Command::new(workspace_root().join("cross/build.sh")).arg("build").output().unwrap();
    assert!(build.status.success(), "cross/build.sh build:\n{}", String::from_utf8_lossy(&build.stderr));
    for (triple, _) in TARGETS {
        let file = Command::new("file").arg(binary(triple)).output().expect("file(1)");
        let file = String::from_utf8_lossy(&file.stdout);
        assert!(file.contains("statically linked"), "{triple} is not static: {file}");
    }
    let size = |triple: &str| std::fs::metadata(binary(triple)).unwrap().len();
    assert!(size(TARGETS[0].0) <= AARCH64_MAX_BYTES, "aarch64 binary is {} bytes", size(TARGETS[0].0));

    let captures = edgeprobe_tests::fixture_captures();
    assert!(captures.len() >= 8, "fixtures: {captures:?}");
    let busiest = captures.iter().max_by_key(|p| std::fs::metadata(p).unwrap().len()).unwrap().clone();
    let host = edgeprobe_bin();
    let mut lines = 0;
    for capture in &captures {
        let (expected, _) = replay(&[host.to_str().unwrap()], capture);
        assert!(!expected.is_empty(), "{} printed nothing", capture.display());
        lines += expected.iter().filter(|&&b| b == b'\n').count();
        for (triple, qemu) in TARGETS {
            let (got, _) = replay(&[qemu, binary(triple).to_str().unwrap()], capture);
            assert!(got == expected, "{triple} under {qemu} differs from x86-64 on {}", capture.display());
        }
    }
    let (_, host_rss) = replay(&[host.to_str().unwrap()], &busiest);
    let mut figures = format!("x86-64 (debug) peak RSS {host_rss} KiB");
    for (triple, qemu) in TARGETS {
        let (_, rss) = replay(&[qemu, binary(triple).to_str().unwrap()], &busiest);
        figures += &format!("; {triple}: {} bytes, peak RSS under {qemu} {rss} KiB", size(triple));
    }
    eprintln!(
        "cross: {} captures, {lines} lines identical on both ARM builds; busiest {}: {figures}",
        captures.len(),
        busiest.file_name().unwrap().to_string_lossy()
    );
}

/// `rust-version = "1.85"` holds for the whole workspace, collector and tests included: cargo
/// does not check it, and a newer toolchain accepts syntax (let chains) and dependency
/// releases that 1.85 refuses.
#[test]
fn the_whole_workspace_builds_with_rust_1_85() {
    if !prerequisite(toolchain_ready(), "Debian's Rust 1.85 (run `cross/build.sh install` as root)") {
        return;
    }
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace_root())
        .env("RUSTC", "/usr/bin/rustc")
        .env_remove("RUSTC_WRAPPER")
        .args(["check", "--workspace", "--all-targets", "--locked", "--target-dir", "target/rust-1.85"])
        .output()
        .unwrap();
    assert!(out.status.success(), "cargo check with Rust 1.85:\n{}", String::from_utf8_lossy(&out.stderr));
}

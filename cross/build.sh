#!/usr/bin/env bash
# ARM gateway builds of the agent with Debian bookworm's Rust 1.85 (rustup cannot add targets
# without the internet; Debian ships the ARM standard libraries).
#
#   cross/build.sh install   install the toolchain, linkers, qemu-user and file (root, Debian bookworm)
#   cross/build.sh build     build edgeprobe for every target below
#   cross/build.sh           both
#
# Binaries: target/cross/<triple>/gateway/edgeprobe, statically linked (glibc's static libc),
# so they need nothing on the router, musl-based OpenWrt included.
set -euo pipefail
cd "$(dirname "$0")/.."

RUST_VERSION=1.85.0+dfsg3-1~deb12u3
TARGETS=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

deb_arch() { case $1 in aarch64-*) echo arm64 ;; armv7-*) echo armhf ;; esac; }
gnu_prefix() { case $1 in aarch64-*) echo aarch64-linux-gnu ;; armv7-*) echo arm-linux-gnueabihf ;; esac; }

install() {
    export DEBIAN_FRONTEND=noninteractive
    local packages=(qemu-user file)
    for t in "${TARGETS[@]}"; do
        local arch
        arch=$(deb_arch "$t")
        dpkg --print-foreign-architectures | grep -qx "$arch" || dpkg --add-architecture "$arch"
        packages+=("gcc-$(gnu_prefix "$t")" "libc6-dev-$arch-cross")
    done
    # A mirror caught mid-sync fails some index (seen for bookworm-security armhf); what is
    # needed comes from bookworm main, and the installs below fail clearly if it is missing.
    apt-get update -qq || apt-get update -qq || echo "cross: some package indexes failed; going on" >&2
    # Pinned: a newer rustc-web exists for amd64 only, without ARM standard libraries.
    apt-get install -y -qq --allow-downgrades "rustc-web=$RUST_VERSION" "cargo-web=$RUST_VERSION" \
        "libstd-rust-web-dev=$RUST_VERSION" "libstd-rust-web-1.85=$RUST_VERSION" \
        "${packages[@]}" >/dev/null
    # The ARM standard libraries cannot be co-installed with the amd64 toolchain (a multiarch
    # conflict), so they are unpacked beside it instead.
    local tmp
    tmp=$(mktemp -d)
    for t in "${TARGETS[@]}"; do
        [ -d "/usr/lib/rustlib/$t/lib" ] && continue
        local arch
        arch=$(deb_arch "$t")
        (cd "$tmp" && apt-get download -qq "libstd-rust-web-dev:$arch=$RUST_VERSION" \
            "libstd-rust-web-1.85:$arch=$RUST_VERSION")
        for deb in "$tmp"/*_"$arch".deb; do dpkg -x "$deb" "$tmp/root-$arch"; done
        cp -r "$tmp/root-$arch/usr/lib/rustlib/$t" /usr/lib/rustlib/
    done
    rm -rf "$tmp"
}

build() {
    export RUSTC=/usr/bin/rustc
    for t in "${TARGETS[@]}"; do
        local env_name
        env_name=$(echo "$t" | tr 'a-z-' 'A-Z_')
        export "CARGO_TARGET_${env_name}_LINKER=$(gnu_prefix "$t")-gcc"
        export "CARGO_TARGET_${env_name}_RUSTFLAGS=-C target-feature=+crt-static"
        # Only the agent, without the host's optional parts (see agent/Cargo.toml features).
        /usr/bin/cargo build --locked --profile gateway --target "$t" --target-dir target/cross \
            -p edgeprobe-agent --bin edgeprobe --no-default-features
        ls -l "target/cross/$t/gateway/edgeprobe"
    done
}

case ${1:-all} in
    install) install ;;
    build) build ;;
    all) install && build ;;
    *) echo "usage: $0 [install|build]" >&2; exit 2 ;;
esac

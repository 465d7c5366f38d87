#!/usr/bin/env bash
# Build a statically linked `restix` for x86_64 Linux (musl), the binary to
# copy onto hypervisors and backup servers (OpenNebula rsyncs its driver's
# `restic` there, spec: callers §1.8), and print its path.
#
#   scripts/build-static.sh            # release build, prints the binary path
#   CARGO_TARGET_DIR=/tmp/t scripts/build-static.sh
#
# Needs the Rust target (`rustup target add x86_64-unknown-linux-musl`) and a
# C compiler for musl, because zstd-sys and ring compile C code
# (`apt-get install musl-tools` gives `musl-gcc`). Without musl-gcc, or with
# RESTIX_STATIC_GNU=1, it falls back to the glibc target with
# `-C target-feature=+crt-static` (static too, but glibc's NSS functions
# such as getpwuid then need the same glibc at run time).
set -euo pipefail

cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
musl=x86_64-unknown-linux-musl
gnu=x86_64-unknown-linux-gnu

have_musl_target() {
    rustup target list --installed 2>/dev/null | grep -qx "$musl"
}

if [[ "${RESTIX_STATIC_GNU:-0}" != 1 ]] && have_musl_target && command -v musl-gcc >/dev/null; then
    target=$musl
    # The cc crate looks for `x86_64-linux-musl-gcc` by default; Debian's
    # musl-tools installs the wrapper as `musl-gcc`. It compiles the C code
    # only: linking stays with rustc's default (self-contained musl crt,
    # static-pie). musl-gcc as the linker would give a dynamically linked
    # PIE that needs /lib/ld-musl-x86_64.so.1.
    export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}"
    export AR_x86_64_unknown_linux_musl="${AR_x86_64_unknown_linux_musl:-ar}"
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="${CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS:-} -C target-feature=+crt-static"
else
    echo "build-static: musl target or musl-gcc missing; using $gnu with +crt-static" >&2
    target=$gnu
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="${CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS:-} -C target-feature=+crt-static"
fi

CARGO_TARGET_DIR="$target_dir" cargo build --release -p restix-cli --target "$target" >&2

bin="$target_dir/$target/release/restix"
if command -v file >/dev/null; then
    file -L "$bin" >&2
fi
echo "$bin"

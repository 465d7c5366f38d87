#!/bin/sh
# Build restix and the benchmark harness in release mode, then run the
# benchmark; all arguments go to restix-benches (see --help).
#   benches/run.sh --quick
#   benches/run.sh --size 2G --repeat 3 --prune --sftp
# CARGO_TARGET_DIR is honoured (default: the workspace's target/).
set -eu
cd "$(dirname "$0")/.."
features=""
for arg in "$@"; do
    case "$arg" in
        --sftp|*sftp*) features="$features,sftp" ;;
    esac
    case "$arg" in
        --s3|*s3*) features="$features,s3" ;;
    esac
    case "$arg" in
        --distance) features="$features,sftp,s3" ;;
        --rest|*rest*) features="$features,rest" ;;
    esac
done
[ -n "$features" ] && features="--features ${features#,}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release -p restix-cli ||
    echo "run.sh: restix did not build; its runs will show FAILED" >&2
# shellcheck disable=SC2086
cargo build --release -p restix-benches $features
exec "$target/release/restix-benches" --restix "${RESTIX_BIN:-$target/release/restix}" "$@"

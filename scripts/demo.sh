#!/usr/bin/env bash
# Builds restix, then: init a local repository, back up a folder, list the
# snapshots, restore the latest one and compare it with the original.
#
#   scripts/demo.sh [FOLDER]        (default: this repository's engine/ sources)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
src="$(cd "${1:-$root/engine}" && pwd)"
work="$(mktemp -d -t restix-demo-XXXXXX)"

cargo build --release -p restix-cli --manifest-path "$root/Cargo.toml"
restix="${CARGO_TARGET_DIR:-$root/target}/release/restix"

export RESTIC_REPOSITORY="$work/repo"
export RESTIC_PASSWORD="demo password"
export RESTIC_CACHE_DIR="$work/cache"

set -x
"$restix" init
"$restix" backup "$src"
"$restix" snapshots
"$restix" restore latest --target "$work/restore"
diff -r "$src" "$work/restore$src"
set +x
echo "demo OK: repository $work/repo, restored copy in $work/restore$src"

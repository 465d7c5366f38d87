#!/usr/bin/env bash
# Fuzz every restix parser of outside bytes (cargo-fuzz project in fuzz/).
#
#   scripts/fuzz.sh [SECONDS]        run each target SECONDS (default 30) and
#                                    print executions and coverage per target
#   scripts/fuzz.sh seeds            regenerate fuzz/seeds/ from the fixtures
#                                    (restic, qemu-img and zstd are needed)
#   TARGETS="tree qcow2" scripts/fuzz.sh 60   only some targets
#
# cargo-fuzz needs nightly compiler flags: the nightly toolchain is used when
# rustup has one, otherwise stable with RUSTC_BOOTSTRAP=1. SANITIZER=address
# turns AddressSanitizer on (default none: the parsers are safe Rust, so
# panics are the findings and uninstrumented runs are about twice as fast).
# A crash is saved by libFuzzer under fuzz/artifacts/<target>/; copy it into
# fuzz/regressions/<target>/ once fixed so that
# tests/tests/reliability_fuzz_regressions.rs replays it on every test run.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ="$ROOT/fuzz"
ALL_TARGETS="keyfile config decrypt pack_header index snapshot tree lock unpacked decompress qcow2 sftp_location ssh_config s3_location cli_args"
TARGETS="${TARGETS:-$ALL_TARGETS}"
SANITIZER="${SANITIZER:-none}"

make_seeds() {
    local fixtures="${RESTIX_FIXTURES:-$ROOT/../shared/fixtures}/restic-upstream"
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    rm -rf "$FUZZ/seeds"
    for t in $ALL_TARGETS; do mkdir -p "$FUZZ/seeds/$t"; done
    local s="$FUZZ/seeds"

    # small-repo: its master key is compiled into the targets, so its raw
    # (encrypted) files decrypt inside them.
    tar -xzf "$fixtures/small-repo.tar.gz" -C "$tmp"
    local repo="$tmp/repo"
    export RESTIC_PASSWORD=geheim
    for f in "$repo"/keys/*; do cp "$f" "$s/keyfile/"; done
    cp "$repo/config" "$s/config/config.enc"
    restic -r "$repo" cat config --no-lock > "$s/config/config.json"
    cp "$repo/config" "$s/decrypt/config.enc"
    for f in "$repo"/index/*; do
        local id; id="$(basename "$f")"
        cp "$f" "$s/unpacked/index-$id"
        restic -r "$repo" cat index "$id" --no-lock > "$s/index/$id.json"
    done
    local n=0
    for f in "$repo"/snapshots/*; do
        local id; id="$(basename "$f")"
        cp "$f" "$s/unpacked/snapshot-$id"
        restic -r "$repo" cat snapshot "$id" --no-lock > "$s/snapshot/$id.json"
        n=$((n + 1))
        if [ "$n" -le 2 ]; then
            local tree
            tree="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["tree"])' < "$s/snapshot/$id.json")"
            restic -r "$repo" cat blob "$tree" --no-lock > "$s/tree/$tree.json"
            # one level of subtrees
            for sub in $(python3 -c 'import json,sys; [print(n["subtree"]) for n in json.load(sys.stdin)["nodes"] if n.get("subtree")]' < "$s/tree/$tree.json" | head -3); do
                restic -r "$repo" cat blob "$sub" --no-lock > "$s/tree/$sub.json"
            done
        fi
    done
    cp "$(ls "$s"/unpacked/snapshot-* | head -1)" "$s/decrypt/"
    # Pack tails (the encrypted header and its length) of the smallest packs.
    for f in $(find "$repo/data" -type f -printf '%s %p\n' | sort -n | head -4 | cut -d' ' -f2); do
        tail -c 2048 "$f" > "$s/pack_header/tail-$(basename "$f" | cut -c1-16)"
    done

    # A lock as restic writes it, and its compressed variants.
    printf '%s' '{"time":"2024-05-01T10:00:00.123456789+02:00","exclusive":false,"hostname":"kasimir","username":"fd0","pid":4242,"uid":1000,"gid":1000}' > "$s/lock/lock.json"
    printf '%s' '{"time":"2024-05-01T10:00:00Z","exclusive":true,"hostname":"h","username":"root","pid":1}' > "$s/lock/exclusive.json"
    for f in "$s"/index/*.json "$s"/lock/lock.json; do
        zstd -q -c "$f" > "$s/decompress/$(basename "$f").zst"
        { printf '\002'; cat "$s/decompress/$(basename "$f").zst"; } > "$s/unpacked/v2-$(basename "$f")"
    done
    head -c 3000 /dev/zero | zstd -q -c > "$s/decompress/zeros.zst"

    # qcow2 images: small clusters keep the files (and the seeds) small.
    local img="$tmp/img"
    mkdir -p "$img"
    qemu-img create -q -f qcow2 -o cluster_size=512 "$img/empty.qcow2" 1M
    qemu-img create -q -f qcow2 -o cluster_size=512 "$img/data.qcow2" 1M
    qemu-io -f qcow2 -c 'write -P 0xab 0 4k' -c 'write -z 8k 4k' -c 'write -P 0x11 600k 1k' "$img/data.qcow2" > /dev/null
    qemu-img convert -q -c -O qcow2 -o cluster_size=4096 "$img/data.qcow2" "$img/compressed.qcow2"
    qemu-img convert -q -c -O qcow2 -o cluster_size=4096,compression_type=zstd "$img/data.qcow2" "$img/zstd.qcow2"
    qemu-img create -q -f qcow2 -o cluster_size=512,compat=0.10 "$img/v2.qcow2" 1M
    qemu-io -f qcow2 -c 'write -P 0x22 1k 2k' "$img/v2.qcow2" > /dev/null
    qemu-img create -q -f qcow2 -o cluster_size=16k,extended_l2=on "$img/l2ext.qcow2" 1M
    qemu-io -f qcow2 -c 'write -P 0x33 2k 1k' "$img/l2ext.qcow2" > /dev/null
    qemu-img create -q -f qcow2 -o cluster_size=512 -b data.qcow2 -F qcow2 "$img/overlay.qcow2"
    qemu-io -f qcow2 -c 'write -P 0x44 4k 512' "$img/overlay.qcow2" > /dev/null
    for f in "$img"/*.qcow2; do
        if [ "$(stat -c %s "$f")" -le 65536 ]; then cp "$f" "$s/qcow2/"; fi
    done

    printf '%s' 'sftp:backup@host.example:/srv/restic-repo' > "$s/sftp_location/short"
    printf '%s' 'sftp://backup@[::1]:2222//srv/repo/' > "$s/sftp_location/url"
    printf '%s' 'sftp:host:relative/./repo/../r' > "$s/sftp_location/relative"
    printf '%s' 'sftp://h:22/%7Erepo' > "$s/sftp_location/escaped"
    printf '%s' 's3:s3.amazonaws.com/bucket/prefix/sub' > "$s/s3_location/aws"
    printf '%s' 's3:http://127.0.0.1:3900/restix/repo' > "$s/s3_location/http"
    printf '%s' 's3://minio.example:9000/b/./x/../y' > "$s/s3_location/url"
    # cli_args: NUL-separated argv as OpenNebula and Velero write it (spec: callers).
    printf '%s\0' --force --json --tag=one-42 --limit-upload=-1 --option=sftp.connections=8 \
        --compression=max --repo=sftp:oneadmin@backup:/var/lib/one/datastores/100/42 \
        backup /var/lib/one/datastores/0/42/backup/disk.0.0 --host=one-42 > "$s/cli_args/opennebula"
    printf '%s\0' snapshots --repo=s3:http://minio:9000/velero/restic/ns --password-file=/tmp/p \
        --cacert=/tmp/ca.pem --cache-dir=/scratch/.cache/restic --json --latest=1 \
        --tag=a=b,c=d --insecure-tls=true > "$s/cli_args/velero"
    printf '%s\0' -r /srv/repo forget --keep-daily 7 --keep-within-weekly 1y2m --prune \
        --max-unused 5% -o s3.connections=3 --group-by host,paths > "$s/cli_args/forget"
    cat > "$s/ssh_config/config" <<'CFG'
# global
ServerAliveInterval 30
Host backup-host *.example !bad.example
    HostName 10.0.0.5
    User backup
    Port 2222
    IdentityFile ~/.ssh/id_ed25519
    UserKnownHostsFile ~/.ssh/known_hosts "/etc/ssh/known hosts"
    StrictHostKeyChecking=yes
Match all
    Compression yes
CFG
    du -sh "$s"
}

run_targets() {
    local secs="$1"
    local toolchain=()
    if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        toolchain=(+nightly)
    else
        export RUSTC_BOOTSTRAP=1
    fi
    command -v cargo-fuzz > /dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz" >&2; exit 2; }
    cd "$FUZZ"
    # cargo fuzz build takes one target or all; all is a no-op when built.
    cargo "${toolchain[@]}" fuzz build -O -s "$SANITIZER"
    local failed=0
    printf '%-14s %12s %8s %8s %8s  %s\n' target execs exec/s cov ft result
    for t in $TARGETS; do
        mkdir -p "corpus/$t" "artifacts/$t"
        if [ -d "seeds/$t" ]; then cp -n seeds/"$t"/* "corpus/$t/" 2> /dev/null || true; fi
        local log="artifacts/$t/last-run.log"
        local rc=0
        cargo "${toolchain[@]}" fuzz run -O -s "$SANITIZER" "$t" "corpus/$t" -- \
            -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -max_len=262144 \
            -print_final_stats=1 > "$log" 2>&1 || rc=$?
        local execs speed cov ft
        execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1 || true)"
        speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1 || true)"
        cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)"
        ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)"
        local result=ok
        if [ "$rc" -ne 0 ]; then
            result="CRASH rc=$rc (see fuzz/$log; input in fuzz/artifacts/$t/)"
            failed=1
        fi
        printf '%-14s %12s %8s %8s %8s  %s\n' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$result"
    done
    return "$failed"
}

case "${1:-30}" in
    seeds) make_seeds ;;
    -h|--help) sed -n '2,16p' "$0" ;;
    *) run_targets "${1:-30}" ;;
esac

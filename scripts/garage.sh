#!/usr/bin/env bash
# A private 3-node Garage cluster on 127.0.0.1 (replication factor 3) for
# benchmarks and manual S3 runs; the tests use tests/src/garage.rs instead.
#
#   scripts/garage.sh start DIR   # start, set up key + bucket, print env lines
#   scripts/garage.sh stop DIR    # kill the nodes started in DIR
#
# Then: eval "$(scripts/garage.sh env DIR)"; restix -r "$RESTIX_S3_REPO" init
# GARAGE_BIN overrides the binary (default: /work/targets/garage-bin/bin/garage,
# else `garage` on PATH). Ports: 39x0 (S3 of node x = 3900+10x).
set -euo pipefail

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|env DIR" >&2; exit 2; }
bin=${GARAGE_BIN:-/work/targets/garage-bin/bin/garage}
[ -x "$bin" ] || bin=$(command -v garage || true)
[ -n "$bin" ] || { echo "garage not found (cargo install garage --locked)" >&2; exit 1; }

key_id=GK0123456789abcdef01234567
secret=5a1e6f0c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7
rpc_secret=c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00

print_env() {
    echo "export AWS_ACCESS_KEY_ID=$key_id AWS_SECRET_ACCESS_KEY=$secret AWS_DEFAULT_REGION=garage"
    echo "export RESTIX_S3_REPO=s3:http://127.0.0.1:3910/restix/repo"
}

retry() { # run a garage CLI command against node 1 until it succeeds (90 s)
    for _ in $(seq 180); do
        if out=$("$bin" -c "$dir/node1/garage.toml" "$@" 2>&1); then echo "$out"; return 0; fi
        sleep 0.5
    done
    echo "garage $*: $out" >&2; return 1
}

case $cmd in
start)
    mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
    for n in 1 2 3; do
        mkdir -p "$dir/node$n/meta" "$dir/node$n/data"
        cat > "$dir/node$n/garage.toml" <<TOML
metadata_dir = "$dir/node$n/meta"
data_dir = "$dir/node$n/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:39${n}1"
rpc_public_addr = "127.0.0.1:39${n}1"
rpc_secret = "$rpc_secret"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:39${n}0"
root_domain = ".s3.garage.localhost"
TOML
        nohup "$bin" -c "$dir/node$n/garage.toml" server > "$dir/node$n/server.log" 2>&1 &
        echo $! > "$dir/node$n/pid"
    done
    for n in 2 3; do
        id=$("$bin" -c "$dir/node$n/garage.toml" node id -q 2>/dev/null || retry node id -q)
        retry node connect "$id" >/dev/null
    done
    zone=1
    for n in 1 2 3; do
        id=$("$bin" -c "$dir/node$n/garage.toml" node id -q | cut -c1-16)
        retry layout assign -z "dc$zone" -c 10G "$id" >/dev/null; zone=$((zone + 1))
    done
    retry layout apply --version 1 >/dev/null
    retry key import --yes -n restix-key "$key_id" "$secret" >/dev/null
    retry key allow --create-bucket restix-key >/dev/null
    retry bucket create restix >/dev/null
    retry bucket allow --read --write --owner restix --key restix-key >/dev/null
    print_env
    ;;
stop)
    for n in 1 2 3; do
        [ -f "$dir/node$n/pid" ] && kill "$(cat "$dir/node$n/pid")" 2>/dev/null || true
        rm -f "$dir/node$n/pid"
    done
    ;;
env) print_env ;;
*) echo "usage: $0 start|stop|env DIR" >&2; exit 2 ;;
esac

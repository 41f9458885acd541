#!/usr/bin/env bash
# xlb demo (`make demo`): a two-node lab with xlb on both nodes, connections
# balanced across pods, a backend removed through the manifest directory, and
# a short packet-generator run. Everything happens in network namespaces that
# the lab creates; they are removed on exit, whatever happens.
#
# Usage: scripts/demo.sh [path/to/xlb]   (needs root)
set -euo pipefail

XLB=${1:-target/release/xlb}
PREFIX=${XLB_DEMO_PREFIX:-xlbdemo}
NODE1=198.18.0.11

if [ "$(id -u)" != 0 ]; then
	echo "the demo needs root (network namespaces, BPF): sudo make demo" >&2
	exit 1
fi
[ -x "$XLB" ] || { echo "no xlb binary at $XLB (make build)" >&2; exit 1; }

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() {
	step "tearing down"
	"$XLB" lab down --prefix "$PREFIX" || true
}
trap cleanup EXIT

# A lab left over by an interrupted run is removed first.
"$XLB" lab down --prefix "$PREFIX" >/dev/null 2>&1 || true

step "lab up: client, 2 nodes x 2 pods, VXLAN overlay, xlb agent per node"
"$XLB" lab up --prefix "$PREFIX"

step "lab check: NodePort and ClusterIP, local and remote, over real TCP"
"$XLB" lab check --prefix "$PREFIX"

step "Services node1 balances (xlb maps services)"
"$XLB" --pin-dir "/sys/fs/bpf/$PREFIX-node1" maps services

step "400 connections to NodePort $NODE1:30080 (Service web: 4 pods on 2 nodes)"
"$XLB" lab spread --prefix "$PREFIX" --to "$NODE1:30080" --count 400

step "remove pod n1p2 from Service web (rewrite its EndpointSlice in the manifest directory)"
"$XLB" lab set-endpoints --prefix "$PREFIX" --service web --pods n1p1,n2p1,n2p2
# The agents re-read the directory within a fraction of a second; wait until
# new connections no longer reach n1p2 (bounded).
for _ in $(seq 1 50); do
	if ! "$XLB" lab spread --prefix "$PREFIX" --to "$NODE1:30080" --count 40 --json | grep -q '"n1p2"'; then
		break
	fi
	sleep 0.2
done
"$XLB" lab spread --prefix "$PREFIX" --to "$NODE1:30080" --count 400

step "per-reason counters on node1 (xlb maps stats)"
"$XLB" --pin-dir "/sys/fs/bpf/$PREFIX-node1" maps stats

step "xlb bench run --scenario nodeport-remote --seconds 2 (its own veth topology; Mpps vs XDP_DROP / XDP_TX baselines)"
"$XLB" bench run --scenario nodeport-remote --seconds 2

#!/usr/bin/env bash
# One device of a foglearn Flower deployment (docs/flower.md): its SuperNode, started with
# `--isolation process`, and the long-running ClientApp worker (python -m foglearn.flower.worker)
# that runs every message of the run in one process (imports once, not once per message).
# Usage: flower_app/device.sh SUPERLINK CA_CERT PRIVATE_KEY PARTITION N [RUNTIME_PORT]
#   SUPERLINK host:port; CA_CERT the CA of the SuperLink's certificate; PRIVATE_KEY this device's
#   registered SuperNode key; PARTITION its device index 0..N-1; RUNTIME_PORT the SuperNode's local
#   Runtime API port on 127.0.0.1 (default 9094; one per device on a shared machine).
# Runs in the foreground; when either process exits, the other is stopped and the script exits
# with that status (let systemd's Restart=always bring the device back). PYTHON overrides `python`.
set -euo pipefail
if [ $# -lt 5 ]; then
    echo "usage: $0 SUPERLINK CA_CERT PRIVATE_KEY PARTITION N [RUNTIME_PORT]" >&2
    exit 2
fi
superlink=$1 ca=$2 key=$3 partition=$4 n=$5 port=${6:-9094}
flower-supernode --superlink "$superlink" --root-certificates "$ca" --auth-supernode-private-key "$key" \
    --node-config "partition-id=$partition num-partitions=$n" \
    --isolation process --host 127.0.0.1 --port "$port" &
supernode=$!
"${PYTHON:-python}" -m foglearn.flower.worker --runtime-api-address "127.0.0.1:$port" &
worker=$!
trap 'kill "$supernode" "$worker" 2>/dev/null || true; wait' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
status=0
wait -n "$supernode" "$worker" || status=$?
exit "$status"

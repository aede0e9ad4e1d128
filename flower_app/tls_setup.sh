#!/usr/bin/env bash
# TLS certificates and SuperNode keys for a foglearn Flower deployment (docs/flower.md).
# Usage: flower_app/tls_setup.sh DIR N [SAN]   — DIR/certificates, DIR/keys/supernode-0..N-1;
# SAN: the SuperLink's names (default: DNS:localhost,IP:127.0.0.1; add yours, e.g. IP:192.168.1.10).
# The test tests/test_flower_deploy.py runs this script; docs/flower.md shows it verbatim.
set -euo pipefail
dir=$1
n=$2
san=${3:-DNS:localhost,IP:127.0.0.1}
mkdir -p "$dir/certificates" "$dir/keys"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=foglearn-ca" \
    -keyout certificates/ca.key -out certificates/ca.crt
openssl req -newkey rsa:2048 -nodes -subj "/CN=superlink" \
    -keyout certificates/server.key -out certificates/server.csr
printf "subjectAltName=%s\n" "$san" > certificates/server.ext
openssl x509 -req -in certificates/server.csr -CA certificates/ca.crt -CAkey certificates/ca.key \
    -CAcreateserial -days 365 -out certificates/server.pem -extfile certificates/server.ext
for ((i = 0; i < n; i++)); do
    ssh-keygen -q -t ecdsa -b 384 -N "" -f "keys/supernode-$i"
done

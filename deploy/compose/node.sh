#!/bin/sh
# deploy/compose.yaml's node services: run node $NODE (node1…node10) of the federation init.sh made.
set -eu
DATA=${DATA:-/data}
# shellcheck disable=SC2046 # one --bootstrap flag per line of the args file, split on purpose
exec icn node start --data-dir "$DATA/$NODE" --passphrase-file "$DATA/passphrase" --genesis "$DATA/genesis.car" \
  --p2p-listen "/ip4/0.0.0.0/tcp/${P2P_PORT:-7421}" $(cat "$DATA/args/$NODE")

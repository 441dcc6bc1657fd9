#!/bin/sh
# deploy/compose.yaml's `init` service: make the federation once, and render the monitoring configuration on every
# start. Idempotent: an identity, a passphrase or a genesis that exists is kept, never replaced.
#
#   $DATA/passphrase          the keystores' passphrase (random, 0600), made once
#   $DATA/nodeK/              node K's data folder (icn init: keystore, API key, config with its PostgreSQL URL)
#   $DATA/genesis.car         the federation (icn federation create, signed by node1, the founder)
#   $DATA/args/nodeK          node K's --bootstrap flags (the first three nodes but itself)
#   $CONFIG/prometheus.yml, alertmanager.yml, alerts.yml, targets.json   for the prometheus and alertmanager services
#
# Settings (environment): NODES (10), DATA (/data), CONFIG (/config), ICN (icn), DEPLOY (/icn/deploy, the
# templates), PG_URL (postgres://icn:icn@postgres:5432/icn{n}; {n} is the node's number), P2P_HOST
# (172.28.0.1{n}, the node's fixed address on the compose network; {n} as above), P2P_PORT (7421),
# API_PORT (7420), API_HOST ({node}: the compose service name), FEDERATION_NAME (compose), ALERT_WEBHOOK_URL
# (optional: where Alertmanager posts alerts). test/sim/compose.test.ts runs this script.
set -eu

NODES=${NODES:-10}
DATA=${DATA:-/data}
CONFIG=${CONFIG:-/config}
ICN=${ICN:-icn}
DEPLOY=${DEPLOY:-/icn/deploy}
PG_URL=${PG_URL:-postgres://icn:icn@postgres:5432/icn\{n\}}
P2P_HOST=${P2P_HOST:-172.28.0.1\{n\}}
P2P_PORT=${P2P_PORT:-7421}
API_PORT=${API_PORT:-7420}
API_HOST=${API_HOST:-\{node\}}
FEDERATION_NAME=${FEDERATION_NAME:-compose}

fill() { # fill TEMPLATE K: {n} → K, {node} → nodeK
  printf '%s' "$1" | sed -e "s/{n}/$2/g" -e "s/{node}/node$2/g"
}
json() { # json FIELD: read one string field of the JSON object on stdin
  node -e 'let s="";process.stdin.on("data",(d)=>{s+=d}).on("end",()=>{process.stdout.write(String(JSON.parse(s)[process.argv[1]]))})' "$1"
}

mkdir -p "$DATA/args" "$CONFIG"
umask 077
if [ ! -s "$DATA/passphrase" ]; then
  node -e 'process.stdout.write(require("node:crypto").randomBytes(24).toString("base64url"))' > "$DATA/passphrase"
  echo "init: new passphrase in $DATA/passphrase"
fi

k=1
while [ "$k" -le "$NODES" ]; do
  dir="$DATA/node$k"
  if [ ! -f "$dir/keystore.json" ]; then
    "$ICN" init --data-dir "$dir" --store postgres --pg-url "$(fill "$PG_URL" "$k")" \
      --api-listen "0.0.0.0:$API_PORT" --passphrase-file "$DATA/passphrase" --json > /dev/null
    echo "init: node$k: new identity in $dir"
  fi
  k=$((k + 1))
done

if [ ! -f "$DATA/genesis.car" ]; then
  set --
  k=2
  while [ "$k" -le "$NODES" ]; do
    set -- "$@" --node "$("$ICN" id show --data-dir "$DATA/node$k" --json | json did)"
    k=$((k + 1))
  done
  "$ICN" federation create --data-dir "$DATA/node1" --passphrase-file "$DATA/passphrase" \
    --name "$FEDERATION_NAME" --out "$DATA/genesis.car" "$@" > /dev/null
  echo "init: new federation $FEDERATION_NAME in $DATA/genesis.car"
fi

# Every node dials the first three (but not itself); they all learn the rest from there.
b=1
while [ "$b" -le 3 ] && [ "$b" -le "$NODES" ]; do
  peer=$("$ICN" id show --data-dir "$DATA/node$b" --json | json peerId)
  echo "--bootstrap /ip4/$(fill "$P2P_HOST" "$b")/tcp/$P2P_PORT/p2p/$peer" > "$DATA/args/bootstrap$b"
  b=$((b + 1))
done
k=1
while [ "$k" -le "$NODES" ]; do
  : > "$DATA/args/node$k"
  b=1
  while [ "$b" -le 3 ] && [ "$b" -le "$NODES" ]; do
    [ "$b" -eq "$k" ] || cat "$DATA/args/bootstrap$b" >> "$DATA/args/node$k"
    b=$((b + 1))
  done
  k=$((k + 1))
done

federation=$("$ICN" federation show "$DATA/genesis.car" --json | json id)
NODES="$NODES" API_HOST="$API_HOST" API_PORT="$API_PORT" FEDERATION="$federation" \
  node "$DEPLOY/compose/render.mjs" "$DEPLOY" "$CONFIG"
chmod 0644 "$CONFIG"/*
echo "init: federation $federation, $NODES nodes; monitoring configuration in $CONFIG"

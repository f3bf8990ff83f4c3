#!/bin/sh
# make run: serve MODEL on 127.0.0.1 with the default config (citadel.conf),
# with a development API key kept in build/run/ (created on the first run).
#   scripts/run.sh MODEL
# The tests run it as it is, elsewhere: CITADEL_BIN (the binary),
# CITADEL_RUN_DIR (for build/run) and CITADEL_PORT (for citadel.conf's).
set -eu
MODEL=${1:-../shared/models/stories260K.gguf}
BIN=${CITADEL_BIN:-build/citadel}
DIR=${CITADEL_RUN_DIR:-build/run}
mkdir -p "$DIR"
chmod 700 "$DIR"
if [ ! -s "$DIR/dev.key" ]; then
    (umask 077 && "$BIN" keys add --tenant dev --state "$DIR/citadel.db" --ledger "$DIR/ledger" \
        >"$DIR/dev.key")
fi
KEY=$(cat "$DIR/dev.key")
ID=$(basename "$MODEL" .gguf)
CITADEL_BIN=$BIN CITADEL_RUN_DIR=$DIR sh scripts/admit_dev.sh "$MODEL"
PORT=${CITADEL_PORT:-$(sed -n 's/^port *= *\([0-9]*\).*/\1/p' citadel.conf)}
cat <<MSG

citadel: serving $ID on http://127.0.0.1:$PORT (Ctrl-C stops it). Try:

  curl http://127.0.0.1:$PORT/v1/chat/completions \\
    -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\
    -d '{"model": "$ID", "messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": 64}'

  (add "stream": true for server-sent events; the key is in $DIR/dev.key)

  Every request is scanned and decided by policy.example.yaml (tenant "dev")
  and recorded in $DIR/ledger:  $BIN audit show --dir $DIR/ledger
  The model was admitted by border control:  $BIN model list --state $DIR/citadel.db

MSG
exec "$BIN" serve --config citadel.conf --model "$MODEL" --state "$DIR/citadel.db" \
    --ledger "$DIR/ledger" --port "$PORT"

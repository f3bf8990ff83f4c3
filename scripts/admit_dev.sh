#!/bin/sh
# Admits MODEL on the development node in build/run/ (make run, make
# generate): border control serves a model only once admitted. A
# development signer (build/run/signer.pem) signs the model with its card
# from models/, is trusted by the node, and the node admits the model under
# policy.example.yaml. Does nothing when an active admission exists.
#   scripts/admit_dev.sh MODEL
set -eu
MODEL=${1:-../shared/models/stories260K.gguf}
BIN=${CITADEL_BIN:-build/citadel}
DIR=${CITADEL_RUN_DIR:-build/run}
mkdir -p "$DIR"
chmod 700 "$DIR"
ID=$(basename "$MODEL" .gguf)
NODE="--state $DIR/citadel.db --ledger $DIR/ledger --policy policy.example.yaml"

# Border control: the model is served only once admitted. A development
# signer (kept in build/run/) signs the model with its card from models/,
# is trusted by the node, and the node admits the model under
# policy.example.yaml. Done once; later runs find the admission.
CARD=models/$ID.cdx.json
REAL=$(realpath "$MODEL")
if ! "$BIN" model list --json --state "$DIR/citadel.db" 2>/dev/null |
    grep '"status":"active"' | grep -q "\"gguf\":\"$REAL\""; then
    if [ ! -f "$CARD" ]; then
        echo "make run: no model card for $ID: write $CARD (citadel model card $MODEL -o $CARD" >&2
        echo "writes one to complete), then run again; docs/border.md explains admission" >&2
        exit 1
    fi
    [ -f "$DIR/signer.pem" ] || "$BIN" model keygen "$DIR/signer" >/dev/null
    "$BIN" trust list --state "$DIR/citadel.db" 2>/dev/null | grep -q '^dev-signer ' ||
        "$BIN" trust add --name dev-signer --jurisdiction DE "$DIR/signer.pub.pem" $NODE 2>/dev/null
    "$BIN" model sign --key "$DIR/signer.pem" "$MODEL" --card "$CARD" --sig "$DIR/$ID.sig" >/dev/null
    "$BIN" model admit "$MODEL" --card "$CARD" --sig "$DIR/$ID.sig" $NODE 2>/dev/null
fi

#!/bin/sh
# The real `citadel serve` binary (the sanitizer build under make check)
# against real clients: curl, the official openai npm package, LangChain JS
# and the Vercel AI SDK, installed from the npm registry into build-san/npm
# on first use. Also the
# lifecycle: config file, SIGHUP reload, SIGTERM drain, exit status (which
# carries LeakSanitizer's verdict). Then the audit ledger from outside:
# citadel audit verify|show|export|proof on what the server wrote, and a
# crash test that kills the server with SIGKILL under load, again and
# again, and checks that every answer a client received is in the ledger.
#
#   tests/serve_clients.sh BIN MODEL
set -eu
BIN=${1:-build-san/citadel}
MODEL=${2:-../shared/models/stories260K.gguf}
ROOT=$(pwd)
NPM_DIR=$ROOT/build-san/npm
TMP=$(mktemp -d /tmp/citadel-serve-XXXXXX)
PID=
passed=0
failed=0

cleanup() {
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    [ -f "$TMP/server.log" ] && tail -20 "$TMP/server.log" | sed 's/^/    /'
}
check() { # check NAME COMMAND...
    name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name"; fi
}
# start_server OUTFILE ARGS...: runs citadel serve in the background, waits
# for its "serving" line, sets PID and PORT
start_server() {
    out=$1
    shift
    "$BIN" serve "$@" >"$out" 2>"$TMP/server.log" &
    PID=$!
    for _ in $(seq 100); do
        grep -q "serving" "$out" 2>/dev/null && break
        sleep 0.1
    done
    PORT=$(sed -n 's/.*:\([0-9]*\) (.*/\1/p' "$out")
}
# stop_server NAME: SIGTERM, then the exit status must be 0 (under the
# sanitizers that includes LeakSanitizer's verdict)
stop_server() {
    kill -TERM "$PID" 2>/dev/null || true # it may be draining already
    status=0
    wait "$PID" || status=$?
    PID=
    check "$1" test "$status" = 0
}
# json FILE EXPR: prints a field of a JSON file with node
json() { node -e "const j=JSON.parse(require('fs').readFileSync('$1','utf8')); const v=$2; process.stdout.write(typeof v==='string'?v:JSON.stringify(v))"; }

# ---- the openai package ----
NPM_PKGS="openai@6 @langchain/openai@1 ai@5 @ai-sdk/openai@2 zod@3 ajv@8"
missing=
for p in openai @langchain/openai ai @ai-sdk/openai zod ajv; do
    [ -f "$NPM_DIR/node_modules/$p/package.json" ] || missing=1
done
if [ -n "$missing" ]; then
    mkdir -p "$NPM_DIR"
    # shellcheck disable=SC2086 # the package list splits on purpose
    (cd "$NPM_DIR" && echo '{"private":true}' >package.json &&
        npm install --no-audit --no-fund --loglevel=error $NPM_PKGS >/dev/null 2>&1) ||
        { echo "FAIL could not install the npm packages ($NPM_PKGS) from the registry"; exit 1; }
fi
cp tests/openai_client.mjs tests/embed_clients.mjs tests/structured_clients.mjs "$NPM_DIR/"

# ---- a node with a config file and a key ----

# a policy for this model and these tenants: everything stays local
cat >"$TMP/policy.yaml" <<EOF
version: 1
node: {id: ci-node, jurisdiction: DE}
classes: [public, internal, personal, secret]
detectors: {private_key: secret, api_key: secret, secret_token: secret}
tenants:
  ci: {requests_per_minute: 100000}
  open:
models:
  $(basename "$MODEL" .gguf): {jurisdiction: DE, classes: [public, internal, personal]}
rules:
  - id: secrets-stay-out
    when: {classes_any: [secret]}
    action: deny
  - id: default-local
    action: local
admission:
  licenses: [MIT]
  dataset_jurisdictions: [EU, US]
  unvetted: allow          # the TLS, queue and crash servers below serve MODEL as it is
EOF

ID=$(basename "$MODEL" .gguf)
AMODEL=$TMP/$ID.gguf # the copy that is signed and admitted
cat >"$TMP/citadel.conf" <<EOF
# written by tests/serve_clients.sh
host = 127.0.0.1
port = 0
model = $AMODEL
threads = 2
ctx = 512
parallel = 4
state = $TMP/state.db
policy = $TMP/policy.yaml
ledger = $TMP/ledger
max_tokens = 256
grace = 20
EOF

KEY=$("$BIN" keys add --tenant ci --config "$TMP/citadel.conf" 2>/dev/null)
check "keys add prints one key" test "$(printf %s "$KEY" | wc -c)" -eq 64
"$BIN" keys list --json --config "$TMP/citadel.conf" >"$TMP/keys.json"
check "keys list shows the tenant, not the key" sh -c "grep -q '\"tenant\":\"ci\"' $TMP/keys.json && ! grep -q '$KEY' $TMP/keys.json"
check "the state file holds no key" sh -c "! grep -q '$KEY' $TMP/state.db"
check "the key's creation is in the ledger" grep -q '"action":"key_add"' "$TMP/ledger/log"

# ---- border control: keygen, card, sign, verify, trust, admit, then serve ----
cp "$MODEL" "$AMODEL"
"$BIN" model keygen "$TMP/signer" >/dev/null
"$BIN" model card "$AMODEL" >/dev/null
# the operator completes the card: name, version, license, the dataset and where it comes from
sed -i 's/"name": "llama"/"name": "'"$ID"'"/; s/"version": "TODO"/"version": "1"/;
        s/"TODO: SPDX id"/"MIT"/; s/"TODO: dataset name"/"TinyStories"/; s/"value": "TODO"/"value": "US"/' \
    "$TMP/$ID.cdx.json"
check "model sign (model and card)" sh -c "'$BIN' model sign --key '$TMP/signer.pem' '$AMODEL' | grep -q '2 files'"
check "model verify" "$BIN" model verify --key "$TMP/signer.pub.pem" "$AMODEL"
"$BIN" model admit "$AMODEL" --config "$TMP/citadel.conf" >"$TMP/admit0.txt" 2>&1 || true
check "model admit: refused while the signer is not trusted" grep -q "REFUSED (trust)" "$TMP/admit0.txt"
check "trust add" "$BIN" trust add --name ci-signer --jurisdiction DE "$TMP/signer.pub.pem" --config "$TMP/citadel.conf"
"$BIN" model admit "$AMODEL" --config "$TMP/citadel.conf" >"$TMP/admit.txt" 2>&1 || true
check "model admit" grep -q "^admitted" "$TMP/admit.txt"
check "model list: active" sh -c "'$BIN' model list --config '$TMP/citadel.conf' | grep -q 'active *$ID'"

start_server "$TMP/server.out" --config "$TMP/citadel.conf"
[ -n "$PORT" ] || { fail "server started"; exit 1; }
ok "server started on port $PORT with the admitted model"
URL=http://127.0.0.1:$PORT
H="Authorization: Bearer $KEY"

# ---- lockdown: the kernel holds it, /readyz says so, the ledger has its statement ----
curl -sf "$URL/readyz" >"$TMP/ready.json"
check "lockdown active (readyz)" test "$(json "$TMP/ready.json" 'j.lockdown.active && j.lockdown.seccomp && j.lockdown.tcp_ports && j.lockdown.missing === ""')" = true
LOCK_HASH=$(json "$TMP/ready.json" 'j.lockdown.statement_sha256')
check "the ledger holds the air-gap statement readyz names" \
    sh -c "grep '\"event\":\"lockdown\"' $TMP/ledger/log | grep -q '\"request\":\"$LOCK_HASH\"'"
check "the statement recorded hashes to its recorded name" sh -c "grep '\"event\":\"lockdown\"' $TMP/ledger/log | tail -1 | node -e \"let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const j=JSON.parse(s);const h=require('crypto').createHash('sha256').update(j.detail).digest('hex');process.exit(h===j.request&&h===j.digest&&h==='$LOCK_HASH'?0:1)})\""

# ---- curl ----
check "curl healthz" sh -c "curl -sf $URL/healthz | grep -q ok"
code=$(curl -s -o "$TMP/e.json" -w '%{http_code}' "$URL/v1/models")
check "curl without a key: 401" test "$code" = 401
check "401 body in the OpenAI error shape" test "$(json "$TMP/e.json" 'j.error.type')" = invalid_request_error
curl -sf -H "$H" "$URL/v1/models" >"$TMP/m.json"
check "curl models" test "$(json "$TMP/m.json" 'j.data[0].id')" = "$ID"

mkdir -p "$TMP/runnode" # a node of its own: the served one has its server
GREEDY=$("$BIN" run -m "$AMODEL" -p "Once upon a time" -n 24 --temp 0 --json --tenant ci --config "$TMP/citadel.conf" --state "$TMP/runnode/state.db" --unvetted --ledger "$TMP/ledger-run" 2>/dev/null | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>process.stdout.write(JSON.parse(s).text))")
curl -sf -H "$H" "$URL/v1/completions" \
    -d '{"model":"'"$ID"'","prompt":"Once upon a time","max_tokens":24,"temperature":0}' >"$TMP/c.json"
check "curl completion equals citadel run --temp 0" test "$(json "$TMP/c.json" 'j.choices[0].text')" = "$GREEDY"
curl -sfN -H "$H" "$URL/v1/chat/completions" \
    -d '{"model":"'"$ID"'","messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"stream":true}' >"$TMP/s.txt"
check "curl stream ends with data: [DONE]" sh -c "tail -2 $TMP/s.txt | grep -qx 'data: \[DONE\]'"
code=$(curl -s -o "$TMP/e.json" -w '%{http_code}' -H "$H" "$URL/v1/chat/completions" -d '{"model":"'"$ID"'","messages":"hi"}')
check "curl bad messages: 400 naming the field" sh -c "test $code = 400 && test \"\$(node -e \"process.stdout.write(JSON.parse(require('fs').readFileSync('$TMP/e.json','utf8')).error.param)\")\" = messages"

# ---- the openai package ----
if (cd "$NPM_DIR" && node openai_client.mjs "$URL/v1" "$KEY" "$ID" "$GREEDY") >"$TMP/node.out" 2>&1; then
    ok "openai npm client: $(tail -1 "$TMP/node.out")"
else
    fail "openai npm client"
    sed 's/^/    /' "$TMP/node.out"
fi

# ---- structured output: openai, the Vercel AI SDK, LangChain JS ----
if (cd "$NPM_DIR" && node structured_clients.mjs "$URL/v1" "$KEY" "$ID") >"$TMP/struct.out" 2>&1; then
    ok "structured output, openai + AI SDK + LangChain: $(tail -1 "$TMP/struct.out")"
else
    fail "structured output, openai + AI SDK + LangChain"
    sed 's/^/    /' "$TMP/struct.out"
fi

# ---- SIGHUP: a lower max_tokens applies without a restart ----
sed -i 's/^max_tokens = 256/max_tokens = 16/' "$TMP/citadel.conf"
kill -HUP "$PID"
sleep 0.5
code=$(curl -s -o /dev/null -w '%{http_code}' -H "$H" "$URL/v1/completions" -d '{"model":"'"$ID"'","prompt":"a","max_tokens":100}')
check "SIGHUP reloads limits (max_tokens 100 now refused)" test "$code" = 400
check "server still serves after reload" sh -c "curl -sf $URL/readyz | grep -q ready"

# ---- SIGTERM: a request in flight finishes, then a clean exit ----
sed -i 's/^max_tokens = 16/max_tokens = 400/' "$TMP/citadel.conf"
kill -HUP "$PID"
sleep 0.3
curl -sN -H "$H" "$URL/v1/completions" \
    -d '{"model":"'"$ID"'","prompt":"Once","max_tokens":400,"stream":true}' >"$TMP/drain.txt" &
CURL=$!
# the stream is in flight once its first piece came (not before: a TERM
# that beats the request to the server rightly refuses it)
i=0; while ! grep -q '^data:' "$TMP/drain.txt" 2>/dev/null && [ $i -lt 200 ]; do
    sleep 0.02; i=$((i+1)); done
kill -TERM "$PID"
wait "$CURL" || true
stop_server "SIGTERM: exit status 0 (no leaks under the sanitizers)"
check "SIGTERM: the in-flight stream completed" sh -c "tail -2 $TMP/drain.txt | grep -qx 'data: \[DONE\]' && grep -q finish_reason $TMP/drain.txt"
if grep -q "ERROR: \(Address\|Leak\)Sanitizer\|runtime error" "$TMP/server.log"; then
    fail "sanitizer report in the server log"
    grep -A20 "Sanitizer\|runtime error" "$TMP/server.log" | head -40 | sed 's/^/    /'
fi

# ---- border control at load: a changed file, a revoked model ----
cp "$AMODEL" "$TMP/orig.gguf"
printf '\001' | dd of="$AMODEL" bs=1 seek=100000 conv=notrunc 2>/dev/null
"$BIN" serve --config "$TMP/citadel.conf" >"$TMP/refused.out" 2>&1 && st=0 || st=$?
check "serve refuses a model whose bytes changed since admission" \
    sh -c "test $st != 0 && grep -q 'refused (digest)' $TMP/refused.out"
cp "$TMP/orig.gguf" "$AMODEL"
"$BIN" model revoke "$ID" --reason "ci: withdrawn" --config "$TMP/citadel.conf" >/dev/null
"$BIN" serve --config "$TMP/citadel.conf" >"$TMP/refused.out" 2>&1 && st=0 || st=$?
check "serve refuses a revoked model" sh -c "test $st != 0 && grep -q 'refused (revoked)' $TMP/refused.out"
"$BIN" serve --config "$TMP/citadel.conf" --unvetted >"$TMP/refused.out" 2>&1 && st=0 || st=$?
check "--unvetted does not bring back a revoked model" sh -c "test $st != 0 && grep -q 'refused (revoked)' $TMP/refused.out"
"$BIN" audit show --dir "$TMP/ledger" >"$TMP/show-border.txt" 2>/dev/null || true
check "the ledger holds the admission, the load and both refusals" \
    sh -c "grep -q 'model admit' $TMP/show-border.txt && grep -q 'model load' $TMP/show-border.txt &&
           grep -q 'refuse_load  digest' $TMP/show-border.txt && grep -q 'refuse_load  revoked' $TMP/show-border.txt"

# ---- TLS (and an open node: no key) ----
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$TMP/key.pem" -out "$TMP/cert.pem" -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 >/dev/null 2>&1
# ---- the ledger, from the auditor's side ----
AUD="$BIN audit"
check "audit verify: the ledger the server wrote is sound" $AUD verify --dir "$TMP/ledger" --key "$TMP/ledger/node.vkey"
$AUD show --dir "$TMP/ledger" >"$TMP/show.txt" 2>&1 || true
check "audit show lists the decisions" grep -q "local    default-local" "$TMP/show.txt"
$AUD export --dir "$TMP/ledger" --since 2000-01-01 --until 2100-01-01 >"$TMP/export.jsonl" 2>&1 || true
check "audit export: JSON lines, one per decision" sh -c "test \$(wc -l <$TMP/export.jsonl) -ge 5 && head -1 $TMP/export.jsonl | grep -q '^{\"seq\":0,'"
check "audit export: nothing outside the window" sh -c "test \$($AUD export --dir $TMP/ledger --since 2000-01-01 --until 2000-01-02 | wc -l) = 0"
$AUD proof 2 --dir "$TMP/ledger" >"$TMP/proof.json" 2>&1 || true
check "audit proof: an inclusion proof against the signed tree" sh -c "grep -q '\"index\":2,' $TMP/proof.json && grep -q '\"signed\":true' $TMP/proof.json"
cp -r "$TMP/ledger" "$TMP/ledger-t"
L=$(grep -n '"rule":"default-local"' "$TMP/ledger-t/log" | head -1 | cut -d: -f1)
sed -i "${L}s/\"status\":200/\"status\":201/" "$TMP/ledger-t/log"
$AUD verify --dir "$TMP/ledger-t" >"$TMP/tamper.txt" 2>&1 && tampered=missed || tampered=caught
check "audit verify: an edited entry is caught and named" sh -c "test $tampered = caught && grep -q 'entry $((L - 1)) ' $TMP/tamper.txt"

start_server "$TMP/tls.out" --config /dev/null --model "$MODEL" --port 0 --threads 2 --open --unvetted \
    --policy "$TMP/policy.yaml" --ledger "$TMP/ledger-tls" --state "$TMP/tls.db" \
    --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem"
curl -sfN --cacert "$TMP/cert.pem" "https://127.0.0.1:$PORT/v1/chat/completions" \
    -d '{"model":"'"$ID"'","messages":[{"role":"user","content":"Hi"}],"max_tokens":8,"stream":true}' >"$TMP/tls.txt" || true
check "TLS: a streamed chat over HTTPS" sh -c "tail -2 $TMP/tls.txt | grep -qx 'data: \[DONE\]'"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/healthz" || true)
check "TLS: plain HTTP is not answered" test "$code" = 000
stop_server "TLS: clean exit"

# ---- embeddings: the openai package and LangChain JS against synth-bert ----
MODELS_DIR=$(cd "$(dirname "$MODEL")" && pwd)
cat >"$TMP/policy-emb.yaml" <<EOF
version: 1
node: {id: ci-embed, jurisdiction: DE}
classes: [public, internal, personal, secret]
detectors: {email: personal, private_key: secret, api_key: secret}
tenants:
  open:
models:
  synth-bert: {jurisdiction: DE, classes: [public, internal, personal]}
rules:
  - id: secrets-stay-out
    when: {classes_any: [secret]}
    action: deny
  - id: personal-redacted
    when: {class_at_least: personal}
    action: redact
  - id: default-local
    action: local
admission:
  licenses: [MIT]
  dataset_jurisdictions: ["*"]
  unvetted: allow
EOF
start_server "$TMP/emb.out" --config /dev/null --model "synth-bert=$MODELS_DIR/synth-bert.gguf" \
    --port 0 --threads 2 --open --unvetted --policy "$TMP/policy-emb.yaml" \
    --ledger "$TMP/ledger-emb" --state "$TMP/emb.db"
if (cd "$NPM_DIR" && node embed_clients.mjs "http://127.0.0.1:$PORT/v1" none synth-bert \
    "$MODELS_DIR/synth-bert.ref.json") >"$TMP/emb.node.out" 2>&1; then
    ok "embeddings, openai npm and LangChain JS: $(tail -1 "$TMP/emb.node.out")"
else
    fail "embeddings, openai npm and LangChain JS"
    sed 's/^/    /' "$TMP/emb.node.out"
fi
code=$(curl -s -o "$TMP/emb-deny.json" -w '%{http_code}' "http://127.0.0.1:$PORT/v1/embeddings" \
    -d '{"model":"synth-bert","input":"the key is sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"}')
check "embeddings: secret material denied as in chat (403)" \
    sh -c "test $code = 403 && grep -q secrets-stay-out $TMP/emb-deny.json"
stop_server "embeddings server: clean exit"
check "embeddings: the ledger verifies and records the requests" sh -c \
    "'$BIN' audit verify --dir '$TMP/ledger-emb' >/dev/null && test \$(grep -c '\"request\":\"embd-' '$TMP/ledger-emb/log') -ge 8"

# ---- a full queue and a client that leaves, seen from curl ----
start_server "$TMP/q.out" --config /dev/null --model "$MODEL" --port 0 --threads 2 --open --unvetted \
    --policy "$TMP/policy.yaml" --ledger "$TMP/ledger-q" --state "$TMP/q.db" \
    --parallel 1 --queue 0 --ctx 4096 --max-tokens 4000
curl -sN "http://127.0.0.1:$PORT/v1/completions" \
    -d '{"model":"'"$ID"'","prompt":"Once","max_tokens":4000,"stream":true}' >"$TMP/long.txt" &
CURL=$!
for _ in $(seq 100); do
    grep -q "data:" "$TMP/long.txt" 2>/dev/null && break
    sleep 0.05
done
curl -s -D "$TMP/h429.txt" -o "$TMP/b429.json" "http://127.0.0.1:$PORT/v1/completions" \
    -d '{"model":"'"$ID"'","prompt":"a","max_tokens":4}' >/dev/null
check "curl: 429 with Retry-After while the only slot is busy" \
    sh -c "head -1 $TMP/h429.txt | grep -q ' 429' && grep -qi '^Retry-After: 1' $TMP/h429.txt"
kill "$CURL" 2>/dev/null || true
wait "$CURL" 2>/dev/null || true
check "the long stream was still running when its client left" sh -c "! grep -q DONE $TMP/long.txt"
freed=no
for _ in $(seq 40); do
    if curl -s "http://127.0.0.1:$PORT/metrics" | grep -q '^citadel_active_sequences{model="'"$ID"'"} 0'; then
        freed=yes
        break
    fi
    sleep 0.05
done
check "curl killed mid-stream: its sequence is freed" test "$freed" = yes
check "the disconnect is counted" sh -c "curl -s http://127.0.0.1:$PORT/metrics | grep -q '^citadel_client_disconnects_total 1'"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/v1/completions" -d '{"model":"'"$ID"'","prompt":"a","max_tokens":4}')
check "the freed slot serves the next request" test "$code" = 200
stop_server "clean exit"

# ---- kill -9 under load: every answer a client got is in the ledger ----
# Four clients (plain and streamed) send requests in a loop; the server is
# killed with SIGKILL at a random moment, restarted on the same ledger, and
# so on. A client counts a request as acknowledged only when it holds the
# whole answer (the usage object, or data: [DONE]).
ROUNDS=${CRASH_ROUNDS:-8}
: >"$TMP/acked"
load_client() { # load_client N STREAM
    while [ -f "$TMP/run" ]; do
        if [ "$2" = 1 ]; then
            b=$(curl -s --max-time 10 -N "http://127.0.0.1:$PORT/v1/completions" -d '{"model":"'"$ID"'","prompt":"Once","max_tokens":6,"stream":true}' 2>/dev/null || true)
            case "$b" in *"data: [DONE]"*) printf '%s\n' "$b" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' | head -1 >>"$TMP/acked.$1" ;; esac
        else
            b=$(curl -s --max-time 10 "http://127.0.0.1:$PORT/v1/completions" -d '{"model":"'"$ID"'","prompt":"Once upon","max_tokens":6}' 2>/dev/null || true)
            case "$b" in *'"usage":{'*'}}'*) printf '%s\n' "$b" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p' >>"$TMP/acked.$1" ;; esac
        fi
    done
}
crash_ok=yes
for round in $(seq "$ROUNDS"); do
    start_server "$TMP/crash.out" --config /dev/null --model "$MODEL" --port 0 --threads 2 --open --unvetted \
        --policy "$TMP/policy.yaml" --ledger "$TMP/ledger-crash" --state "$TMP/crash.db" \
        --checkpoint-interval 1
    [ -n "$PORT" ] || { crash_ok="no (round $round: the server did not restart)"; break; }
    touch "$TMP/run"
    for n in 1 2 3 4; do load_client "$n" $((n % 2)) & done
    # 0.3 to 2.2 s of load, then SIGKILL
    sleep "$(awk -v s="$round$$" 'BEGIN{srand(s); printf "%.2f", 0.3 + rand() * 1.9}')"
    kill -KILL "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    rm -f "$TMP/run"
    wait
done
cat "$TMP"/acked.* >"$TMP/acked" 2>/dev/null || true
start_server "$TMP/crash.out" --config /dev/null --model "$MODEL" --port 0 --threads 2 --open --unvetted \
    --policy "$TMP/policy.yaml" --ledger "$TMP/ledger-crash" --state "$TMP/crash.db"
stop_server "crash test: the server reopens the ledger after $ROUNDS kills and exits cleanly"
$AUD verify --dir "$TMP/ledger-crash" >"$TMP/crash-verify.txt" 2>&1 && v=ok || v=failed
check "crash test: audit verify passes after $ROUNDS kills" test "$v" = ok
$AUD export --dir "$TMP/ledger-crash" --since 2000-01-01 --until 2100-01-01 |
    sed -n 's/.*"request":"\([^"]*\)".*/\1/p' | sort >"$TMP/logged"
missing=$(sort "$TMP/acked" | comm -23 - "$TMP/logged" | wc -l)
n_acked=$(wc -l <"$TMP/acked")
check "crash test: all $n_acked acknowledged requests are in the ledger ($missing missing)" \
    sh -c "test $missing = 0 && test $n_acked -gt $ROUNDS && test '$crash_ok' = yes"

echo "serve clients: $passed passed, $failed failed"
[ "$failed" = 0 ]

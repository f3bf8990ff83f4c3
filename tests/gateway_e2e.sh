#!/bin/sh
# The diplomatic gateway end to end (docs/gateway.md): three citadel
# processes on loopback, DE, FR and FR2, each with its own policy, ledger
# and node key, and a stand-in for a foreign OpenAI-compatible provider
# (tests/fake_upstream.mjs) that records every byte it receives. The nodes'
# identities are made by the test: each node's key first, then the
# policies that pin them.
#
#   DE forwards what FR is cleared for, FR re-decides under its own policy,
#   both ledgers hold the passport and the receipt and cross-check;
#   public requests may go to the foreign provider, personal ones never;
#   passports crafted by an independent implementation (tests/peer_client.mjs,
#   from the format in docs/gateway.md): the right one is taken, a tampered,
#   expired or replayed one and an unknown key are refused and recorded;
#   a wrong pin, failover, every peer down, a peer that stalls;
#   FR witnesses DE's checkpoints, and a rollback of DE's ledger is caught.
#
#   tests/gateway_e2e.sh BIN MODEL
set -eu
BIN=${1:-build-san/citadel}
MODEL=${2:-../shared/models/stories260K.gguf}
BIN=$(realpath "$BIN")
MODEL=$(realpath "$MODEL")
ROOT=$(pwd)
ID=$(basename "$MODEL" .gguf)
TMP=$(mktemp -d /tmp/citadel-gw-XXXXXX)
passed=0
failed=0
UP_PID=

cleanup() {
    for n in de fr fr2; do
        [ -f "$TMP/$n/pid" ] && kill -KILL "$(cat "$TMP/$n/pid")" 2>/dev/null || true
    done
    [ -n "$UP_PID" ] && kill -KILL "$UP_PID" 2>/dev/null || true
    [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    for n in de fr fr2; do
        [ -f "$TMP/$n/log" ] && tail -4 "$TMP/$n/log" | sed "s/^/    $n: /"
    done
    return 0
}
check() { # check NAME COMMAND...
    name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name"; fi
}
# json FILE EXPR: a field of a JSON file
json() { node -e "const j=JSON.parse(require('fs').readFileSync('$1','utf8')); const v=$2; process.stdout.write(typeof v==='string'?v:JSON.stringify(v))"; }
quiet() { "$@" >/dev/null 2>&1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# last_entry NODE: the newest ledger entry of NODE
last_entry() { tail -1 "$TMP/$1/ledger/log"; }

# ---- the foreign provider ----
echo "up-secret-key" >"$TMP/up.key"
: >"$TMP/up.log"
node tests/fake_upstream.mjs "$TMP/up.port" "$TMP/up.log" up-secret-key &
UP_PID=$!
for _ in $(seq 100); do [ -s "$TMP/up.port" ] && break; sleep 0.1; done
UP=$(cat "$TMP/up.port")

# ---- three nodes: config, keys, then the policies that pin the keys ----
for n in de fr fr2; do
    mkdir -p "$TMP/$n"
    eval "PORT_$n=$(free_port)"
    eval "PEER_$n=$(free_port)"
done
# conf NODE
conf() {
    cat >"$TMP/$1/citadel.conf" <<EOF
host = 127.0.0.1
port = $(eval echo \$PORT_$1)
peer_listen = 127.0.0.1:$(eval echo \$PEER_$1)
peer_check = 1
model = $MODEL
threads = 1
ctx = 256
parallel = 2
max_tokens = 64
state = $TMP/$1/state.db
policy = $TMP/$1/policy.yaml
ledger = $TMP/$1/ledger
checkpoint_interval = 1
grace = 5
EOF
}
COMMON='classes: [public, internal, personal, secret]
admission: {licenses: [MIT], dataset_jurisdictions: ["*"], unvetted: allow}'
for n in de fr fr2; do
    conf $n
    printf 'version: 1\nnode: {id: %s, jurisdiction: %s}\n%s\ntenants: {t: {}}\nmodels: {%s: {jurisdiction: EU, classes: [public]}}\nrules: [{id: all, action: local}]\n' \
        $n "$(echo $n | tr a-z A-Z | cut -c1-2)" "$COMMON" "$ID" >"$TMP/$n/policy.yaml"
    "$BIN" peer identity --config "$TMP/$n/citadel.conf" >"$TMP/$n/identity" 2>"$TMP/$n/identity.err" ||
        { cat "$TMP/$n/identity.err"; exit 1; }
done
check "peer identity: each node's key line" sh -c "grep -q '^de/audit+[0-9a-f]\{8\}+' $TMP/de/identity && grep -q '^fr/audit+' $TMP/fr/identity"
IDE=$(cat "$TMP/de/identity")
IFR=$(cat "$TMP/fr/identity")
IFR2=$(cat "$TMP/fr2/identity")
WFR=$("$BIN" peer identity --witness --config "$TMP/fr/citadel.conf" 2>/dev/null)
check "peer identity --witness: FR's witness key, another key" \
    sh -c "echo '$WFR' | grep -q '^fr/witness+' && test '$WFR' != '$IFR'"

# DE: internal work for tenant eu may go to FR, then FR2; tenant app's
# public requests may go to the foreign provider; tenant stall goes to a
# provider that stops mid-answer; tenant pin to FR under a wrong pin.
cat >"$TMP/de/policy.yaml" <<EOF
version: 1
node: {id: de, jurisdiction: DE}
$COMMON
detectors: {email: personal, ipv4: internal, private_key: secret, api_key: secret}
keywords: [{word: PROJECTX, class: internal}]
tenants: {eu: {}, app: {}, stall: {}, pin: {}}
models:
  $ID: {jurisdiction: DE, classes: [public, internal, personal]}
peers:
  fr:  {kind: citadel, jurisdiction: FR, url: "https://127.0.0.1:$PEER_fr", classes: [public, internal], identity: "$IFR", witness_key: "$WFR", timeout_s: 30}
  fr2: {kind: citadel, jurisdiction: FR, url: "https://127.0.0.1:$PEER_fr2", classes: [public, internal], identity: "$IFR2"}
  frpin: {kind: citadel, jurisdiction: FR, url: "https://127.0.0.1:$PEER_fr", classes: [public, internal], identity: "$IFR2"}
  global: {kind: openai, jurisdiction: US, url: "http://127.0.0.1:$UP/v1", classes: [public], api_key_file: ../up.key, model: global-model}
  slow: {kind: openai, jurisdiction: US, url: "http://127.0.0.1:$UP/v1", classes: [public, internal], api_key_file: ../up.key, model: stall, timeout_s: 2}
rules:
  - {id: secrets-stay-out, when: {classes_any: [secret]}, action: deny}
  - {id: eu-to-fr, when: {tenant: eu, class_at_most: internal}, action: forward, peer: [fr, fr2]}
  - {id: stall, when: {tenant: stall}, action: forward, peer: slow}
  - {id: pin, when: {tenant: pin}, action: forward, peer: frpin}
  - {id: public-abroad, when: {tenant: app, class_at_most: public}, action: forward, peer: global}
  - {id: personal-redacted, when: {class_at_least: personal}, action: redact, restore: true}
  - {id: default-local, action: local}
EOF
# FR and FR2: DE is a peer (a tenant of theirs); an IPv4 address is
# personal data here, and personal data from a peer is refused.
for n in fr fr2; do
    cat >"$TMP/$n/policy.yaml" <<EOF
version: 1
node: {id: $n, jurisdiction: FR}
$COMMON
detectors: {email: personal, ipv4: personal, private_key: secret}
tenants: {de: {}}
models:
  $ID: {jurisdiction: FR, classes: [public, internal, personal]}
peers:
  de: {kind: citadel, jurisdiction: DE, url: "https://127.0.0.1:$PEER_de", classes: [public], identity: "$IDE"}
rules:
  - {id: no-personal-from-peers, when: {tenant: de, class_at_least: personal}, action: deny, reason: "personal data from abroad is not processed here"}
  - {id: default-local, action: local}
EOF
done
for n in de fr fr2; do
    check "$n: policy check" quiet "$BIN" policy check "$TMP/$n/policy.yaml"
done

# start NODE: serve in the background until its "serving" line
start() {
    "$BIN" serve --unvetted --config "$TMP/$1/citadel.conf" >"$TMP/$1/out" 2>>"$TMP/$1/log" &
    echo $! >"$TMP/$1/pid"
    for _ in $(seq 150); do
        grep -q "peers (mutual TLS)" "$TMP/$1/out" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# stop NODE: SIGTERM; the exit status carries the sanitizers' verdict
stop() {
    pid=$(cat "$TMP/$1/pid")
    kill -TERM "$pid" 2>/dev/null || true
    st=0
    wait "$pid" || st=$?
    rm -f "$TMP/$1/pid"
    check "$1: exits cleanly (status $st)" test "$st" = 0
}
for n in fr fr2; do
    check "$n: serves, with its peer listener" start $n
done
KEY=$("$BIN" keys add --tenant eu --config "$TMP/de/citadel.conf" 2>/dev/null)
KAPP=$("$BIN" keys add --tenant app --config "$TMP/de/citadel.conf" 2>/dev/null)
KSTALL=$("$BIN" keys add --tenant stall --config "$TMP/de/citadel.conf" 2>/dev/null)
KPIN=$("$BIN" keys add --tenant pin --config "$TMP/de/citadel.conf" 2>/dev/null)
KMET=$("$BIN" keys add --tenant app --scope endpoint:metrics --config "$TMP/de/citadel.conf" 2>/dev/null)
# DE as it is now, ledger and state: restored at the end, a rollback
cp -r "$TMP/de/ledger" "$TMP/de-then-ledger"
cp "$TMP/de/state.db" "$TMP/de-then-state.db"
check "de: serves, with its peer listener" start de
DE=http://127.0.0.1:$PORT_de
# chat KEY CONTENT OUT [stream]: POST a chat completion to DE; prints the status
chat() {
    s=false
    [ "${4:-}" = stream ] && s=true
    curl -s -N -o "$3" -w '%{http_code}' -H "Authorization: Bearer $1" "$DE/v1/chat/completions" \
        -d '{"model":"'"$ID"'","messages":[{"role":"user","content":"'"$2"'"}],"max_tokens":16,"temperature":0,"stream":'$s'}'
}
# the answer's text from a stream
stream_text() { grep '^data: {' "$1" | sed 's/^data: //' | node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{let t='';for(const l of s.split('\n'))if(l){const j=JSON.parse(l);if(j.choices&&j.choices[0]&&j.choices[0].delta&&j.choices[0].delta.content)t+=j.choices[0].delta.content}process.stdout.write(t)})"; }

for _ in $(seq 50); do
    "$BIN" peer list --json --config "$TMP/de/citadel.conf" >"$TMP/peers.json" 2>&1 || true
    grep -q '"id":"fr","kind":"citadel".*"healthy":true' "$TMP/peers.json" && break
    sleep 0.1
done
check "peer list (through the serving node): fr up, its identity shown" \
    sh -c "grep '\"id\":\"fr\"' $TMP/peers.json | grep -q '\"healthy\":true.*' && grep -qF '$IFR' $TMP/peers.json"
"$BIN" peer test fr --config "$TMP/de/citadel.conf" >"$TMP/ptest.txt" 2>&1 || true
check "peer test fr: handshake, pin and a passport round trip" sh -c "grep -q 'handshake and pin ok' $TMP/ptest.txt && grep -q 'passport' $TMP/ptest.txt"
"$BIN" peer test frpin --config "$TMP/de/citadel.conf" >"$TMP/ptest2.txt" 2>&1 || true
check "peer test under a wrong pin: FAILED, saying why" grep -q "FAILED.*pinned public key" "$TMP/ptest2.txt"

# ---- vet on DE: its peers tested, a host outside them unreachable ----
"$BIN" vet --config "$TMP/de/citadel.conf" --out "$TMP/vet" >"$TMP/vet.out" 2>&1
check "vet on DE: no check failed (frpin's wrong pin is a warning)" test $? = 0
V=$TMP/vet/vet.json
check "vet: DE is locked down as vet's child was (the ledger's statement)" \
    test "$(json "$V" 'j.ledger.lockdown_matches_this_config')" = true
check "vet: fr passes its test with a verified receipt, frpin fails on its pin" \
    test "$(json "$V" '(p => p.fr.ok + " " + p.fr.passport + " " + p.frpin.ok + " " + /pinned public key/.test(p.frpin.error))(Object.fromEntries(j.checks.gateway.peers.map(x => [x.id, x])))')" = "true receipt verified false true"
check "vet: a public address on a peer's port is refused in-process, a non-peer port by Landlock" \
    test "$(json "$V" 'j.checks.gateway.outside_the_peer_list.map(a => a.by + ":" + a.blocked).sort().join(",")')" = "Landlock:true,in-process check:true"

# ---- 1. internal work goes to FR and streams back ----
code=$(chat "$KAPP" "PROJECTX status in one line" "$TMP/local.json")
check "DE local answer (tenant app, internal stays home): 200" test "$code" = 200
LOCAL=$(json "$TMP/local.json" 'j.choices[0].message.content')
code=$(chat "$KEY" "PROJECTX status in one line" "$TMP/fwd.txt" stream)
check "forward to FR: 200, a stream that ends with [DONE]" sh -c "test $code = 200 && tail -2 $TMP/fwd.txt | grep -qx 'data: \[DONE\]'"
check "FR's streamed answer equals DE's own greedy answer (one model, one engine)" \
    test "$(stream_text "$TMP/fwd.txt")" = "$LOCAL"
E=$(last_entry de)
check "DE's entry: forward to fr, with passport and receipt" \
    sh -c "echo '$E' | grep -q '\"action\":\"forward\"' && echo '$E' | grep -q '\"target\":\"fr\"' && echo '$E' | grep -q '\"passport\":\"' && echo '$E' | grep -q '\"receipt\":\"'"
E=$(last_entry fr)
check "FR's entry: tenant de, local, with the passport" \
    sh -c "echo '$E' | grep -q '\"tenant\":\"de\"' && echo '$E' | grep -q '\"action\":\"local\"' && echo '$E' | grep -q '\"passport\":\"'"
code=$(chat "$KEY" "PROJECTX status in one line" "$TMP/fwd.json")
check "forward, plain answer: 200" test "$code" = 200
check "forward, plain answer: the same text" test "$(json "$TMP/fwd.json" 'j.choices[0].message.content')" = "$LOCAL"
check "usage counts the forwarded tokens" test "$(json "$TMP/fwd.json" 'j.usage.completion_tokens > 0')" = true
E=$(last_entry de)
check "DE's entry for the plain answer (FR answered in one piece): passport and receipt" \
    sh -c "echo '$E' | grep -q '\"target\":\"fr\"' && echo '$E' | grep -q '\"status\":200' && echo '$E' | grep -q '\"passport\":\"' && echo '$E' | grep -q '\"receipt\":\"'"
curl -s -H "Authorization: Bearer $KMET" "$DE/metrics" >"$TMP/metrics.txt"
check "metrics: requests and bytes out by class, per peer" \
    sh -c "grep -q 'citadel_peer_requests_total{peer=\"fr\"} [1-9]' $TMP/metrics.txt && grep -q 'citadel_peer_bytes_out_total{peer=\"fr\",class=\"internal\"} [1-9]' $TMP/metrics.txt"

# ---- 2. FR's own policy refuses what DE would send ----
code=$(chat "$KEY" "reach me at 10.1.2.3" "$TMP/deny.json")
check "FR refuses (an address is personal there): DE's client gets 403" test "$code" = 403
check "the refusal is FR's, as an OpenAI error" \
    sh -c "grep -q \"peer 'fr'\" $TMP/deny.json && grep -q 'personal data from abroad' $TMP/deny.json"
check "FR's error type and code come through" test "$(json "$TMP/deny.json" 'j.error.type + "/" + j.error.code')" = "permission_error/policy_denied"
E=$(last_entry de)
check "DE's entry: forward to fr, status 403, with FR's receipt" \
    sh -c "echo '$E' | grep -q '\"target\":\"fr\"' && echo '$E' | grep -q '\"status\":403' && echo '$E' | grep -q '\"receipt\":\"'"
E=$(last_entry fr)
check "FR's entry: deny under no-personal-from-peers, classes personal" \
    sh -c "echo '$E' | grep -q '\"action\":\"deny\"' && echo '$E' | grep -q 'no-personal-from-peers' && echo '$E' | grep -q 'personal'"

# ---- 3. public abroad, personal never ----
code=$(chat "$KAPP" "Tell me a story about a cat" "$TMP/pub.json")
check "public request to the foreign provider: 200" test "$code" = 200
check "public request to the foreign provider: its answer" test "$(json "$TMP/pub.json" 'j.choices[0].message.content')" = "Hello from abroad."
code=$(chat "$KAPP" "Tell me a story about a dog" "$TMP/pub.txt" stream)
check "the same, streamed: the provider's stream, the same text" \
    test "$code $(stream_text "$TMP/pub.txt")" = "200 Hello from abroad."
check "the provider got it with its API key, and no passport" \
    sh -c "grep -q 'Tell me a story about a cat' $TMP/up.log && grep -q 'Bearer up-secret-key' $TMP/up.log && ! grep -qi 'x-citadel-passport' $TMP/up.log"
code=$(chat "$KAPP" "Write to anna.schmidt@example.de about it" "$TMP/pers.json")
check "personal request: answered at home (200)" test "$code" = 200
check "the provider never received the personal request" sh -c "! grep -q 'anna.schmidt' $TMP/up.log && ! grep -q 'example.de' $TMP/up.log"
E=$(last_entry de)
check "DE's entry for it: redact, target local" sh -c "echo '$E' | grep -q '\"action\":\"redact\"'"

# ---- the ledgers, from the auditor's side ----
check "DE's ledger verifies" quiet "$BIN" audit verify --dir "$TMP/de/ledger" --key "$TMP/de/ledger/node.vkey"
check "FR's ledger verifies" quiet "$BIN" audit verify --dir "$TMP/fr/ledger" --key "$TMP/fr/ledger/node.vkey"
"$BIN" audit verify --dir "$TMP/de/ledger" --key "$TMP/de/ledger/node.vkey" \
    --peer-ledger "$TMP/fr/ledger" --peer-key "$TMP/fr/ledger/node.vkey" >"$TMP/cross.txt" 2>&1 && st=0 || st=$?
check "DE and FR cross-check: every receipt names FR's entry, every passport is DE's" test "$st" = 0
"$BIN" audit show --dir "$TMP/de/ledger" >"$TMP/show.txt" 2>&1 || true
check "audit show shows the passport and the receipt" \
    sh -c "grep -q 'passport [0-9a-f]*: de (DE) -> fr, classes internal' $TMP/show.txt && grep -q 'receipt: node fr entry [0-9]*, status 200' $TMP/show.txt"

# ---- witnesses: FR cosigns DE's checkpoints as DE signs them ----
wsize() { sed -n 2p "$1" 2>/dev/null || echo 0; }
for _ in $(seq 100); do
    "$BIN" peer witnessed de --config "$TMP/fr/citadel.conf" >"$TMP/wit.note" 2>/dev/null || true
    [ "$(wsize "$TMP/wit.note")" -gt 8 ] 2>/dev/null && break
    sleep 0.1
done
check "FR cosigned a checkpoint of DE's grown ledger (peer witnessed de, at FR)" \
    sh -c "grep -q '^— fr/witness ' $TMP/wit.note && test $(wsize "$TMP/wit.note") -gt 8"
"$BIN" peer cosigned fr --config "$TMP/de/citadel.conf" >"$TMP/cos.note" 2>&1 || true
check "DE keeps what FR cosigned (peer cosigned fr, at DE)" grep -q '^— fr/witness ' "$TMP/cos.note"
echo "$WFR" >"$TMP/fr.witness.vkey"
check "audit verify --witness: DE's ledger extends the checkpoint FR cosigned" \
    quiet "$BIN" audit verify --dir "$TMP/de/ledger" --key "$TMP/de/ledger/node.vkey" \
    --since "$TMP/wit.note" --witness "$TMP/fr.witness.vkey"
"$BIN" audit verify --dir "$TMP/de-then-ledger" --key "$TMP/de/ledger/node.vkey" \
    --since "$TMP/wit.note" --witness "$TMP/fr.witness.vkey" >"$TMP/rolled.txt" 2>&1 && st=0 || st=$?
check "audit verify --witness: DE's ledger as it was earlier is caught (rolled back)" \
    sh -c "test $st != 0 && grep -qi 'rolled back\|smaller' $TMP/rolled.txt"

# ---- 4. passports sealed by an independent implementation ----
n_pass=$(grep -c '"event":"passport"' "$TMP/fr/ledger/log" || true)
node tests/peer_client.mjs "$TMP/de/ledger/node.key" "127.0.0.1:$PEER_fr" "$TMP" "$ID" >"$TMP/pc.txt" 2>&1 || true
pc() { grep "\"case\":\"$1\"" "$TMP/pc.txt"; }
check "a passport sealed by hand from docs/gateway.md: taken, answered with a receipt" \
    sh -c "grep '\"case\":\"valid\"' $TMP/pc.txt | grep -q '\"status\":200,.*\"receipt\":true'"
check "a passport valid for 290 s: taken" \
    sh -c "grep '\"case\":\"kept\"' $TMP/pc.txt | grep -q '\"status\":200,.*\"receipt\":true'"
for c in replayed:passport_replayed other-body:passport_mismatch edited:passport_invalid \
    expired:passport_expired missing:passport_missing long-lived:passport_invalid; do
    check "passport ${c%%:*}: 403 ${c#*:}" sh -c "grep '\"case\":\"${c%%:*}\"' $TMP/pc.txt | grep -q '\"status\":403,\"code\":\"${c#*:}\"'"
done
check "an unknown origin's key: the handshake fails, no HTTP at all" \
    sh -c "grep '\"case\":\"stranger\"' $TMP/pc.txt | grep -q '\"status\":0'"
check "FR's ledger records each refused passport" \
    test "$(grep -c '"event":"passport"' "$TMP/fr/ledger/log")" -eq $((n_pass + 6))
"$BIN" audit verify --dir "$TMP/de/ledger" --key "$TMP/de/ledger/node.vkey" \
    --peer-ledger "$TMP/fr/ledger" --peer-key "$TMP/fr/ledger/node.vkey" >"$TMP/cross2.txt" 2>&1 && st=0 || st=$?
check "cross-check now fails: FR holds passports under DE's key that DE never sent" \
    sh -c "test $st != 0 && grep -q 'MISMATCH: entry .* signed by .*de/ledger.s key that .* lacks' $TMP/cross2.txt"
check "FR's ledger records the refused handshake, with where it came from" grep -q '"event":"peer_handshake","detail":"TLS handshake from 127.0.0.1:' "$TMP/fr/ledger/log"

# ---- 5. a wrong pin ----
code=$(chat "$KPIN" "PROJECTX" "$TMP/pin.json")
check "a peer under a wrong pin: 503, nothing answered" sh -c "test $code = 503 && grep -q 'pinned public key' $TMP/pin.json"
E=$(last_entry de)
check "DE's entry: the forward, 503, no passport (none was accepted)" \
    sh -c "echo '$E' | grep -q '\"status\":503' && ! echo '$E' | grep -q '\"passport\"'"

# ---- 6. a peer that stalls mid-answer ----
code=$(chat "$KSTALL" "PROJECTX again" "$TMP/stall.txt" stream)
check "stall: the stream starts (200) with the peer's first words" sh -c "test $code = 200 && grep -q 'I will' $TMP/stall.txt"
check "stall: it ends in an error chunk (peer_failed), never a finish_reason" \
    sh -c "grep -q '\"code\":\"peer_failed\"' $TMP/stall.txt && ! grep -q '\"finish_reason\":\"' $TMP/stall.txt"
E=$(last_entry de)
check "DE's entry: forward to slow, broken off (504), what was sent counted" \
    sh -c "echo '$E' | grep -q '\"target\":\"slow\"' && echo '$E' | grep -q '\"status\":504' && echo '$E' | grep -q '\"tokens_out\":[1-9]'"

# ---- 7. failover, then every peer down ----
stop fr
code=$(chat "$KEY" "PROJECTX failover" "$TMP/fo.json")
E=$(last_entry de)
check "FR down: FR2 answers (200)" test "$code" = 200
check "DE's entry: target fr2" sh -c "echo '$E' | grep -q '\"target\":\"fr2\"'"
stop fr2
n_fr2=$(wc -l <"$TMP/fr2/ledger/log")
code=$(chat "$KEY" "PROJECTX nobody" "$TMP/down.json")
check "all down: 503 peer_unavailable" sh -c "test $code = 503 && grep -q peer_unavailable $TMP/down.json"
E=$(last_entry de)
check "DE's entry: the decision, 503, no passport sent" \
    sh -c "echo '$E' | grep -q '\"status\":503' && echo '$E' | grep -q 'eu-to-fr' && ! echo '$E' | grep -q '\"passport\"'"

stop de

# ---- DE restored from its earlier copy, state and all: FR refuses and records it ----
rm -rf "$TMP/de/ledger"
cp -r "$TMP/de-then-ledger" "$TMP/de/ledger"
cp "$TMP/de-then-state.db" "$TMP/de/state.db"
rm -f "$TMP/de/state.db-wal" "$TMP/de/state.db-shm"
check "fr: serves again" start fr
# FR keeps the passports it took in memory; its ledger gives them back
node tests/peer_client.mjs "$TMP/de/ledger/node.key" "127.0.0.1:$PEER_fr" "$TMP" "$ID" replay >"$TMP/pc2.txt" 2>&1 || true
check "a passport FR took before it restarted: still refused as a replay" \
    sh -c "grep '\"case\":\"kept-replayed\"' $TMP/pc2.txt | grep -q '\"status\":403,\"code\":\"passport_replayed\"'"
check "de: serves again, from the earlier copy" start de
for _ in $(seq 100); do
    grep -q '"event":"witness"' "$TMP/fr/ledger/log" && break
    sleep 0.1
done
check "FR refuses to cosign DE's rolled-back checkpoint, and its ledger says so" \
    grep -q '"tenant":"de".*"event":"witness","detail":"refused to cosign a checkpoint of peer .de.' "$TMP/fr/ledger/log"
for _ in $(seq 50); do
    "$BIN" peer list --config "$TMP/de/citadel.conf" >"$TMP/plist.txt" 2>&1 || true
    grep -q "witness .*rolled back" "$TMP/plist.txt" && break
    sleep 0.1
done
check "DE's peer list says why FR did not cosign" grep -q "witness .*rolled back" "$TMP/plist.txt"
stop de
stop fr
kill -TERM "$UP_PID" 2>/dev/null || true
UP_PID=
for n in de fr fr2; do
    if grep -q "ERROR: \(Address\|Leak\)Sanitizer\|runtime error" "$TMP/$n/log"; then
        fail "$n: sanitizer report"
        grep -A20 "Sanitizer\|runtime error" "$TMP/$n/log" | head -30 | sed 's/^/    /'
    fi
done
echo "gateway: $passed passed, $failed failed"
test "$failed" = 0

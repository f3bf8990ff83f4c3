#!/bin/sh
# citadel vet on the node `make run` serves (scripts/run.sh, as it is,
# in a scratch folder): the report, its signature, what breaks it, and the
# page in a real browser (headless Chromium through playwright-core).
#   tests/vet_e2e.sh BIN MODEL
set -u
BIN=$1
MODEL=$2
ROOT=$(pwd)
NPM_DIR=$ROOT/build-san/npm
TMP=$(mktemp -d /tmp/citadel-vet-XXXXXX)
PID=
passed=0
failed=0
cleanup() {
    [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT
ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
check() { # check NAME COMMAND...
    name=$1
    shift
    if "$@"; then ok "$name"; else fail "$name"; fi
}
json() { node -e "const j=JSON.parse(require('fs').readFileSync('$1','utf8')); const v=$2; process.stdout.write(typeof v==='string'?v:JSON.stringify(v))"; }

# ---- the make run node ----
PORT=$(node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")
CITADEL_BIN=$BIN CITADEL_RUN_DIR=$TMP/run CITADEL_PORT=$PORT sh scripts/run.sh "$MODEL" \
    >"$TMP/run.out" 2>"$TMP/run.err" &
PID=$!
for _ in $(seq 200); do
    grep -q "serving 1 model" "$TMP/run.out" 2>/dev/null && break
    sleep 0.1
done
check "make run's node serves" grep -q "serving 1 model" "$TMP/run.out"
check "make run's node is locked down" grep -q "lockdown enforced" "$TMP/run.out"

# ---- vet ----
NODE="--config citadel.conf --model $MODEL --state $TMP/run/citadel.db --ledger $TMP/run/ledger --port $PORT"
"$BIN" vet $NODE --out "$TMP/vet" >"$TMP/vet.out" 2>"$TMP/vet.err"
rc=$?
check "vet exits 0 (no check failed)" test "$rc" = 0
check "vet wrote vet.json, vet.html and vet.dsse.json" \
    test -s "$TMP/vet/vet.json" -a -s "$TMP/vet/vet.html" -a -s "$TMP/vet/vet.dsse.json"
R=$TMP/vet/vet.json
check "air gap: pass, every attempt blocked" test "$(json "$R" 'j.checks.air_gap.verdict + " " + j.checks.air_gap.attempts.every(a => a.blocked) + " " + j.checks.air_gap.attempts.length')" = "pass true 15"
check "air gap: UDP EPERM, a non-peer port EACCES, exec EPERM" test "$(json "$R" '["DNS over UDP","TCP to a local port that is no peer'"'"'s","exec of a binary"].map(n => j.checks.air_gap.attempts.find(a => a.attempt === n).errno).join(",")')" = "1,13,1"
check "air gap: the statement is the one the running node recorded" test "$(json "$R" 'j.ledger.lockdown_matches_this_config')" = true
check "energy: the policy's declared site" test "$(json "$R" 'j.checks.energy.verdict + " " + j.checks.energy.declared.grid_operator')" = "pass 50Hertz Transmission"
check "energy: measured, or said not to be measurable" test "$(json "$R" 'j.checks.energy.measured.measurable ? j.checks.energy.measured.joules_per_token > 0 : /not measurable/.test(j.checks.energy.measured.why)')" = true
check "training set: the admitted model's datasets and their places" test "$(json "$R" 'j.checks.training_set.models[0].datasets.map(d => d.name + "=" + d.jurisdiction).join(",")')" = "TinyStories=US"
check "gateway: the unresolvable example peer fails its test, a non-peer is unreachable" test "$(json "$R" 'j.checks.gateway.verdict + " " + j.checks.gateway.peers[0].ok + " " + j.checks.gateway.outside_the_peer_list.every(a => a.blocked)')" = "warn false true"
check "the ledger verifies" test "$(json "$R" 'j.ledger.verify')" = sound

# the energy arithmetic, on a counter that moves (this machine has no
# RAPL; a writer stands in for the kernel's: what is checked is the
# reading, the run and the sums, not a measurement)
PC=$TMP/pc/intel-rapl:0
mkdir -p "$PC"
echo 0 >"$PC/energy_uj"
echo 262143328850 >"$PC/max_energy_range_uj"
(i=0; while :; do i=$((i + 1000)); echo $i >"$PC/e.tmp" && mv "$PC/e.tmp" "$PC/energy_uj"; sleep 0.01; done) &
W=$!
"$BIN" vet $NODE --out "$TMP/vet2" --powercap "$TMP/pc" --energy-tokens 16 >/dev/null 2>&1
kill $W 2>/dev/null; wait $W 2>/dev/null
check "energy: joules per token from a moving powercap counter" test "$(json "$TMP/vet2/vet.json" '(m => m.measurable + " " + (m.tokens % 16 === 0 && m.tokens > 0 && m.seconds >= 1) + " " + (m.joules > 0 && Math.abs(m.joules_per_token * m.tokens - m.joules) < 1e-9))(j.checks.energy.measured)')" = "true true true"

# ---- vet verify ----
V="$BIN vet verify --dir $TMP/vet --key $TMP/run/ledger/node.vkey"
check "vet verify: the signature holds" $V
cp -r "$TMP/vet" "$TMP/vet.good"
# one changed byte anywhere in the report fails it
node -e "const f='$R';const b=require('fs').readFileSync(f);const i=b.indexOf('\"pass\"');b[i+1]='f'.charCodeAt(0);require('fs').writeFileSync(f,b)"
check "vet verify: a changed byte in vet.json fails" sh -c "! $V 2>$TMP/v.err && grep -q 'was changed' $TMP/v.err"
cp "$TMP/vet.good/vet.json" "$R"
sed -i 's/report sha256/report sha 256/' "$TMP/vet/vet.html"
node -e "const f='$TMP/vet/vet.html';let s=require('fs').readFileSync(f,'utf8');const h=JSON.parse(require('fs').readFileSync('$TMP/vet/vet.dsse.json')).payload;s=s.split(require('crypto').createHash('sha256').update(Buffer.from(h,'base64')).digest('hex')).join('0'.repeat(64));require('fs').writeFileSync(f,s)"
check "vet verify: a page that is not this report's fails" sh -c "! $V 2>/dev/null"
cp "$TMP/vet.good/vet.html" "$TMP/vet/vet.html"
"$BIN" audit witness-key --name other.example/w --out "$TMP/other" >/dev/null 2>&1
check "vet verify: another key fails" sh -c "! $BIN vet verify --dir $TMP/vet --key $TMP/other.vkey 2>/dev/null"
check "vet verify: restored, it holds again" $V

# ---- the page, in headless Chromium ----
if [ ! -f "$NPM_DIR/node_modules/playwright-core/package.json" ]; then
    mkdir -p "$NPM_DIR"
    [ -f "$NPM_DIR/package.json" ] || echo '{"private":true}' >"$NPM_DIR/package.json"
    (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error playwright-core@1 >/dev/null 2>&1) ||
        { echo "FAIL could not install playwright-core from the npm registry"; exit 1; }
fi
cp tests/vet_page.mjs "$NPM_DIR/"
mkdir -p build
if node "$NPM_DIR/vet_page.mjs" "$TMP/vet/vet.html" "$R" "$ROOT/build/vet-report.png" >"$TMP/page.out" 2>&1; then
    ok "the page in Chromium: $(tail -1 "$TMP/page.out")"
else
    fail "the page in Chromium"
    sed 's/^/    /' "$TMP/page.out"
fi

kill -TERM "$PID" 2>/dev/null
status=0
wait "$PID" || status=$?
PID=
check "the node exits cleanly (no leaks under the sanitizers)" test "$status" = 0
if [ "$failed" != 0 ]; then
    echo "    vet said:"; sed 's/^/    /' "$TMP/vet.out" "$TMP/vet.err" | head -20
    tail -20 "$TMP/run.err" | sed 's/^/    /'
fi
echo "vet: $passed passed, $failed failed"
test "$failed" = 0

#!/bin/sh
# citadel and llama.cpp side by side on the same GGUF files (issue 20).
#
#   LLAMA_CPP_BIN=/path/to/llama.cpp/build/bin sh bench/vs_llamacpp.sh [MIXES] [THREADS] [PAIRS]
#
# MIXES (default q8_0,q4_0,q4_k_m; f16, bf16, q5_k_m, q6_k too) are bench_engine's TinyLlama-1.1B-shaped
# files, generated once into $CITADEL_BENCH_CACHE (~/.cache/citadel-bench);
# both engines read the very same file. THREADS default 1,2; PAIRS default
# 3. For each row the two run in interleaved pairs (citadel, llama.cpp,
# citadel, ...) so that a noisy shared machine slows both alike; each
# prints prefill of a 512-token prompt (pp512) and decode of 128 tokens
# (tg128) in tokens/s; the medians over the pairs and their ratio are
# printed. The project never downloads or vendors llama.cpp: point
# LLAMA_CPP_BIN at a build you made. Without it, citadel's numbers alone.
set -eu
MIXES=${1:-q8_0,q4_0,q4_k_m}
THREADS=${2:-1,2}
PAIRS=${3:-3}
BE=build/bench_engine
CACHE=${CITADEL_BENCH_CACHE:-$HOME/.cache/citadel-bench}
LB=
if [ -n "${LLAMA_CPP_BIN:-}" ]; then
    LB=$LLAMA_CPP_BIN/llama-bench
    [ -x "$LB" ] || { echo "vs_llamacpp: no llama-bench in $LLAMA_CPP_BIN" >&2; exit 2; }
fi
make --no-print-directory "$BE" >/dev/null

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : 0)}'; }

# citadel: one row of bench_engine, "pp tg"
citadel_row() {
    BENCH_RUNS=1 "$BE" --models "$1" --threads "$2" --batch 1 2>/dev/null |
        awk -v m="$1" -v t="$2" '$1 == m && $2 == t {print $3, $4; exit}'
}
# llama.cpp: llama-bench's JSON, "pp tg"
llama_row() {
    "$LB" -m "$CACHE/tinyllama-shape-$1.gguf" -p 512 -n 128 -t "$2" -r 1 -o json 2>/dev/null |
        node -e "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>{const r=JSON.parse(s);const pp=r.find(x=>x.n_prompt>0&&x.n_gen==0),tg=r.find(x=>x.n_gen>0&&x.n_prompt==0);console.log((pp?pp.avg_ts:0)+' '+(tg?tg.avg_ts:0))})"
}

printf "%-8s %4s %12s %12s" model thr "pp512 cit" "tg128 cit"
[ -n "$LB" ] && printf " %12s %12s %9s %9s" "pp512 llama" "tg128 llama" "pp ratio" "tg ratio"
printf "\n"
for mix in $(echo "$MIXES" | tr ',' ' '); do
    BENCH_RUNS=1 "$BE" --models "$mix" --threads 1 --batch 1 >/dev/null 2>&1 # the file, once
    for t in $(echo "$THREADS" | tr ',' ' '); do
        cpp=""; ctg=""; lpp=""; ltg=""
        i=0
        while [ $i -lt "$PAIRS" ]; do
            set -- $(citadel_row "$mix" "$t")
            cpp="$cpp ${1:-0}"; ctg="$ctg ${2:-0}"
            if [ -n "$LB" ]; then
                set -- $(llama_row "$mix" "$t")
                lpp="$lpp ${1:-0}"; ltg="$ltg ${2:-0}"
            fi
            i=$((i + 1))
        done
        mcpp=$(echo "$cpp" | median); mctg=$(echo "$ctg" | median)
        printf "%-8s %4d %12.1f %12.1f" "$mix" "$t" "$mcpp" "$mctg"
        if [ -n "$LB" ]; then
            mlpp=$(echo "$lpp" | median); mltg=$(echo "$ltg" | median)
            printf " %12.1f %12.1f %8.2fx %8.2fx" "$mlpp" "$mltg" \
                "$(awk -v a="$mcpp" -v b="$mlpp" 'BEGIN {print (b > 0 ? a / b : 0)}')" \
                "$(awk -v a="$mctg" -v b="$mltg" 'BEGIN {print (b > 0 ? a / b : 0)}')"
        fi
        printf "\n"
    done
done
echo "medians of $PAIRS interleaved pairs; target (issue 20): both ratios >= 1.00 on every row"
[ -n "$LB" ] || echo "(no LLAMA_CPP_BIN: citadel alone)"

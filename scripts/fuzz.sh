#!/bin/sh
# Runs each libFuzzer target for $1 seconds (default 60) from its seed corpus.
# Seeds: the corpus committed under fuzz/corpus/<target>, plus the small
# models in ../shared/models when present. New inputs go to a scratch copy;
# crashes are written to build-fuzz/ and fail the run.
set -eu
secs=${1:-60}
cd "$(dirname "$0")/.."
for target in gguf tokenize request conf detect policy ledger output bundle card fl admin head \
    passport witness schema; do
    work=build-fuzz/corpus-$target
    mkdir -p "$work"
    cp fuzz/corpus/$target/* "$work"/ 2>/dev/null || true
    if [ "$target" = gguf ]; then
        for m in ../shared/models/stories260K.gguf ../shared/models/llama-2-tiny-random.gguf; do
            [ -f "$m" ] && cp "$m" "$work"/
        done
    fi
    echo "fuzz: $target for ${secs}s"
    ./build-fuzz/fuzz_$target -max_total_time="$secs" -max_len=1048576 -rss_limit_mb=4096 \
        -artifact_prefix=build-fuzz/crash-$target- "$work"
done

#!/bin/sh
# Installs the Debian packages citadel needs, only when they are missing.
#   setup.sh build   compiler, make, libc headers, libmicrohttpd, jansson, SQLite, libsodium,
#                    libyaml, OpenSSL, GMP, zlib, ICU, libcurl, libseccomp
#   setup.sh check   build, plus curl and Node.js with npm for the serve tests, the
#                    federated-learning datasets (Fashion-MNIST, scikit-learn's CSVs),
#                    Chromium for the vet report's page, and (off AArch64) the AArch64
#                    cross compiler and qemu-user for the engine's NEON kernels
#   setup.sh fuzz    clang with libFuzzer
set -eu
what=${1:-build}

missing=""
need() { dpkg -s "$1" >/dev/null 2>&1 || missing="$missing $1"; }
build_deps() {
    need gcc; need make; need libc6-dev
    # HTTP server, JSON, node state, key hashing and randomness
    need libmicrohttpd-dev; need libjansson-dev; need libsqlite3-dev; need libsodium-dev
    # the jurisdiction policy file
    need libyaml-dev
    # model signing: ECDSA keys and SHA-256 (with the CPU's SHA extensions)
    need libssl-dev
    # federated learning: gzip'd datasets
    need zlib1g-dev
    # federated learning: Paillier's big numbers
    need libgmp-dev
    # the detectors' view of the text: NFKC, digits of every script, TR39 confusables
    need libicu-dev
    # the gateway: HTTP/1.1 and server-sent events to peers, over OpenSSL
    need libcurl4-openssl-dev
    # lockdown: the seccomp filter that keeps a serving node off the network
    need libseccomp-dev
}

case "$what" in
build) build_deps ;;
check) build_deps
       # the serve tests talk to the server with curl and the openai npm package
       need curl; need ca-certificates; need openssl
       command -v node >/dev/null 2>&1 || need nodejs
       command -v npm >/dev/null 2>&1 || need npm
       # federated learning tests: Fashion-MNIST, and scikit-learn's CSV sets
       need dataset-fashion-mnist; need python3-sklearn
       # the vet report's page is checked in a real browser
       need chromium
       # the engine's AArch64 kernels, cross-compiled and run under qemu
       if [ "$(uname -m)" != aarch64 ]; then
           need gcc-aarch64-linux-gnu; need libc6-dev-arm64-cross; need qemu-user
       fi ;;
fuzz)  need clang; need libclang-rt-14-dev ;;
*) echo "setup.sh: unknown target '$what' (build, check, fuzz)" >&2; exit 2 ;;
esac

[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: missing Debian packages:$missing; run as root or install them" >&2
    exit 1
fi
echo "setup.sh: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing >/dev/null

# citadel: one plain Makefile.
#
#   make            release build: build/citadel
#   make check      sanitizer build (ASan + UBSan) and every test; last line "N passed, N failed"
#   make check-arm  the engine's tests for AArch64 (NEON), cross-compiled, under qemu-user
#   make bench      engine and serving benchmarks on synthetic TinyLlama-shaped models, detectors,
#                   ledger appends, the sovereignty layer's cost per request, and federated
#                   aggregation rounds (plain FedAvg against SecAgg+)
#   make bench-serve the serving benchmark alone (load generator, TTFT, overhead)
#   make fuzz       libFuzzer targets (clang), FUZZ_SECONDS each
#   make run        serve a model from ../shared/models on 127.0.0.1 (MODEL=...), print a curl command
#   make generate   generate text from PROMPT with MODEL on the command line
#   make install    install build/citadel into $(PREFIX)/bin
#   make format     clang-format every source file (the generated table excepted)

CC      ?= cc
PREFIX  ?= /usr/local
ARCH    := $(shell uname -m)

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla
BASE    := -std=c11 -D_GNU_SOURCE -Iinclude -pthread $(WARN) -MMD -MP
RELEASE := -O2 -g -fno-math-errno
SAN     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all
LDLIBS  := -lseccomp -lcurl -lmicrohttpd -ljansson -lsqlite3 -lsodium -lyaml -lssl -lcrypto -lgmp -lz -licui18n -licuuc -lm \
           -pthread

# Kernels with a SIMD path get their own flags; everything else is built for
# the baseline ISA and picks the path at run time (CPUID), so one binary runs
# on every x86-64.
ifeq ($(ARCH),x86_64)
SIMD_FLAGS := -mavx2 -mfma -mf16c
VNNI_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512vnni
SIMD_SRC   := src/engine/kern_avx2.c src/engine/kern_avx2_vnni.c
else ifeq ($(ARCH),aarch64)
SIMD_FLAGS :=
VNNI_FLAGS :=
SIMD_SRC   := src/engine/kern_neon.c src/engine/kern_neon_dot.c
else
SIMD_FLAGS :=
VNNI_FLAGS :=
SIMD_SRC   :=
endif
DOT_FLAGS := -march=armv8.2-a+dotprod

LIB_SRC  := $(filter-out src/cli/% src/engine/kern_avx2% src/engine/kern_neon%,$(wildcard src/*/*.c)) \
            $(SIMD_SRC)
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/*.c)

# Per-file ISA flags for the SIMD kernel files.
simd = $(if $(findstring kern_avx2,$(1)),$(SIMD_FLAGS)) $(if $(findstring _vnni,$(1)),$(VNNI_FLAGS)) \
       $(if $(findstring kern_neon_dot,$(1)),$(DOT_FLAGS))

REL_OBJ  := $(LIB_SRC:%.c=build/%.o)
REL_CLI  := $(CLI_SRC:%.c=build/%.o)
SAN_OBJ  := $(LIB_SRC:%.c=build-san/%.o)
SAN_CLI  := $(CLI_SRC:%.c=build-san/%.o)
SAN_TEST := $(TEST_SRC:%.c=build-san/%.o)

MODEL  ?= ../shared/models/stories260K.gguf
PROMPT ?= Once upon a time
FUZZ_SECONDS ?= 60

.PHONY: all check check-arm test bench bench-serve fuzz run generate install clean deps format

all: build/citadel

deps:
	@sh scripts/setup.sh build

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(RELEASE) $(CFLAGS) $(call simd,$<) -c $< -o $@

build-san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE) $(SAN) $(CFLAGS) $(call simd,$<) -c $< -o $@

build/libcitadel.a: $(REL_OBJ)
	rm -f $@ && ar rcs $@ $^

build-san/libcitadel.a: $(SAN_OBJ)
	rm -f $@ && ar rcs $@ $^

build/citadel: $(REL_CLI) build/libcitadel.a
	$(CC) $(RELEASE) -o $@ $^ $(LDLIBS)

build-san/citadel: $(SAN_CLI) build-san/libcitadel.a
	$(CC) $(SAN) -o $@ $^ $(LDLIBS)

build-san/test_citadel: $(SAN_TEST) build-san/libcitadel.a
	$(CC) $(SAN) -o $@ $^ $(LDLIBS)

# Tests run the sanitizer build of both the library and the CLI.
# tests/serve_clients.sh then runs the real server against curl and the
# openai npm package, tests/gateway_e2e.sh nodes forwarding to each other,
# tests/vet_e2e.sh `citadel vet` on make run's node and its page in Chromium.
check:
	@sh scripts/setup.sh check
	@$(MAKE) --no-print-directory build-san/test_citadel build-san/citadel
	CITADEL_BIN=build-san/citadel ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1 ./build-san/test_citadel
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  sh tests/serve_clients.sh build-san/citadel $(MODEL)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  sh tests/gateway_e2e.sh build-san/citadel $(MODEL)
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  sh tests/vet_e2e.sh build-san/citadel $(MODEL)
ifneq ($(ARCH),aarch64)
	@$(MAKE) --no-print-directory check-arm
endif

test: check

# The engine on AArch64, from any other machine: its tests (TE in
# tests/test_list.h, which need no library) cross-compiled, statically, with
# UBSan (ASan does not run under qemu-user), and run under qemu-user with
# every NEON set qemu's CPU reports. On an AArch64 machine `make check`
# runs them natively with the rest.
ARM_CC   ?= aarch64-linux-gnu-gcc
ARM_SRC  := $(filter-out src/engine/kern_avx2% src/engine/kern_neon_dot.c,$(wildcard src/engine/*.c)) \
            $(wildcard src/gguf/*.c) \
            $(addprefix src/core/,alloc.c err.c file.c log.c pool.c rng.c)
ARM_TEST := $(addprefix tests/,main.c model_build.c test_chat.c test_embed.c test_gguf.c test_grammar.c test_moe.c test_kernels.c \
              test_model.c test_vocab.c)
ARM_FLAGS = $(filter-out -MMD -MP,$(BASE)) -DTEST_ENGINE_ONLY $(RELEASE) \
            -fsanitize=undefined -fno-sanitize-recover=all

build-arm/test_engine: $(ARM_SRC) $(ARM_TEST) src/engine/kern_neon_dot.c \
                       $(wildcard src/*/*.h include/citadel/*.h tests/*.h)
	@mkdir -p build-arm
	$(ARM_CC) $(ARM_FLAGS) $(DOT_FLAGS) -c src/engine/kern_neon_dot.c -o build-arm/kern_neon_dot.o
	$(ARM_CC) $(ARM_FLAGS) -static -o $@ $(ARM_SRC) $(ARM_TEST) build-arm/kern_neon_dot.o -lm

check-arm: build-arm/test_engine
	qemu-aarch64 build-arm/test_engine

build/bench_%: bench/bench_%.c bench/bench_util.c build/libcitadel.a
	$(CC) $(BASE) $(RELEASE) -o $@ $^ $(LDLIBS)

bench: deps build/bench_engine build/bench_serve build/bench_detect build/bench_ledger build/bench_border build/bench_fl \
       build/bench_gateway build/bench_guard build/bench_grammar build/citadel
	./build/bench_engine $(BENCH_ARGS)
	./build/bench_serve $(BENCH_SERVE_ARGS)
	./build/bench_detect
	./build/bench_ledger
	./build/bench_border
	./build/bench_fl --runs 3
	./build/bench_gateway
	./build/bench_guard
	./build/bench_grammar

bench-serve: deps build/bench_serve
	./build/bench_serve $(BENCH_SERVE_ARGS)

# The fuzz build compiles the baseline sources only: the SIMD kernels need
# per-file flags, and the reader under test does not use them.
build-fuzz/fuzz_%: fuzz/fuzz_%.c $(filter-out src/engine/kern_avx2%,$(LIB_SRC)) build-fuzz/kern_stub.c
	clang $(filter-out -MMD -MP,$(BASE)) -O1 -g -fsanitize=fuzzer,address,undefined \
	  -fno-sanitize-recover=all \
	  -o $@ $^ $(LDLIBS)

build-fuzz/kern_stub.c:
	@mkdir -p build-fuzz
	printf '#include "../src/engine/eng_int.h"\nvoid eng_kernels_avx2(struct eng_kernels *k) { (void)k; }\nvoid eng_kernels_avx2_vnni(struct eng_kernels *k) { (void)k; }\n' > $@

fuzz: deps
	@sh scripts/setup.sh fuzz
	@$(MAKE) --no-print-directory build-fuzz/fuzz_gguf build-fuzz/fuzz_tokenize \
	  build-fuzz/fuzz_request build-fuzz/fuzz_conf build-fuzz/fuzz_detect build-fuzz/fuzz_policy \
	  build-fuzz/fuzz_ledger build-fuzz/fuzz_output build-fuzz/fuzz_bundle \
	  build-fuzz/fuzz_card build-fuzz/fuzz_fl build-fuzz/fuzz_admin build-fuzz/fuzz_head \
	  build-fuzz/fuzz_passport build-fuzz/fuzz_witness build-fuzz/fuzz_schema
	sh scripts/fuzz.sh $(FUZZ_SECONDS)

# Serves MODEL on 127.0.0.1 (citadel.conf) and prints a curl command for it.
run: deps all
	sh scripts/run.sh $(MODEL)

# The engine alone: one prompt, streamed to the terminal.
generate: deps all
	sh scripts/admit_dev.sh $(MODEL)
	./build/citadel run -m $(MODEL) -p "$(PROMPT)" -n 64 --state build/run/citadel.db \
	  --ledger build/run/ledger --policy policy.example.yaml

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 build/citadel $(DESTDIR)$(PREFIX)/bin/citadel

format:
	git ls-files '*.c' '*.h' | grep -v unicode_data | xargs clang-format -i

clean:
	rm -rf build build-san build-fuzz build-arm

-include $(REL_OBJ:.o=.d) $(REL_CLI:.o=.d) $(SAN_OBJ:.o=.d) $(SAN_CLI:.o=.d) $(SAN_TEST:.o=.d)

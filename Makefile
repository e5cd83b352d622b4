# dnnpress: one non-recursive Makefile, one section per artifact.
#
#   make deps            install the Debian packages the project needs (idempotent) and
#                        the dashboard's npm packages (web/package-lock.json)
#   make [all]           build every program and test binary for MODE
#                        (debug|asan|release; default release) under build/$(MODE)/
#   make test            the whole suite, fail-fast: deps, source checks, unit tests
#                        (ASan+UBSan, then release), then the end-to-end suites and
#                        the dashboard in headless Chromium (tests/web)
#   make demo            deps, build, the server with a local worker, a LeNet-5
#                        Fashion-MNIST compression job followed with the CLI, its report;
#                        from a terminal the server then stays up for the dashboard
#   make bench           engine against PyTorch, the server's HTTP load figures and the
#                        compiled models against PyTorch and ONNX Runtime (docs/benchmarks.md);
#                        bench-compile: the compiled models only; bench-compress: ADMM vs
#                        magnitude (long)
#   make fuzz            libFuzzer: the ONNX reader, the HTTP request path, the JSON
#                        checks (FUZZ_TARGETS, FUZZ_SECONDS, default 60 s each)
#   make check           banned functions, self-contained headers, clang-format of every C file
#   make format          clang-format -i every C file
#   make clean
#
# Sections: configuration, libraries each artifact links, then one section per
# artifact (libcommon, libnn, dnnpress-worker, dnnpress-server, dnnpress, the
# unit-test binaries, the ONNX node tests, the fuzzers), then the commands.
# Every variable is defined before the first rule that uses it.

# ---- Configuration -----------------------------------------------------------

MODE ?= release
BUILD := build/$(MODE)
GEN := $(BUILD)/gen

CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif

WARN := -Wall -Wextra -Werror -Wpedantic -Wshadow -Wstrict-prototypes \
        -Wmissing-prototypes -Wformat=2 -Wvla
# common/ and server/ (the CLI included) are held to the stricter conversion
# rules (STYLE rule 39).
WARN_STRICT := -Wconversion -Wsign-conversion

CPPFLAGS_BASE := -std=c11 -D_POSIX_C_SOURCE=200809L -I. -I$(GEN) -MMD -MP

ifeq ($(MODE),release)
OPT := -O2 -DNDEBUG -g
KOPT := -O3 -DNDEBUG -g
else ifeq ($(MODE),asan)
OPT := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
KOPT := $(OPT)
SANLD := -fsanitize=address,undefined
else ifeq ($(MODE),debug)
OPT := -O0 -g
KOPT := $(OPT)
else
$(error MODE must be debug, asan or release)
endif

# Flags by folder (pattern-specific: the longest match wins).
CFLAGS_STRICT := $(CPPFLAGS_BASE) $(WARN) $(WARN_STRICT) $(OPT)
# The engine's kernels may use -O3 (rule 39); OpenMP slices the outermost loops.
CFLAGS_NN := $(CPPFLAGS_BASE) $(WARN) $(KOPT) -fopenmp
CFLAGS_WK := $(CPPFLAGS_BASE) $(WARN) $(OPT) -fopenmp
CFLAGS_TEST := $(CFLAGS_WK) -Wno-missing-prototypes
LDFLAGS := $(SANLD)

# Quiet by default: one line per file; `make V=1` shows the commands.
ifeq ($(V),1)
Q :=
else
Q := @
endif

.DEFAULT_GOAL := all
.PHONY: all web deps test demo bench bench-compile bench-compress bench-circulant fuzz fuzz-build onnx-node-tests \
        check check-banned check-headers format clean image test-image

# ---- Dependencies ------------------------------------------------------------

# The stamp records that tools/deps.sh ran on this machine; every command that
# builds depends on it, so a fresh clone installs what is missing first.
DEPS_STAMP := build/.deps-ok

deps:
	@tools/deps.sh
	@mkdir -p build && touch $(DEPS_STAMP)
	@$(MAKE) --no-print-directory $(WEB_NPM)

$(DEPS_STAMP): tools/deps.sh
	@tools/deps.sh
	@mkdir -p build && touch $@

# ---- Libraries each artifact links -------------------------------------------

COMMON_LIBS := -ljansson -lprotobuf-c -lcurl -larchive -lcrypto -lz -lm
NN_LIBS := -ldnnl -lopenblas -lfftw3f -fopenmp
WORKER_LIBS := -luv $(NN_LIBS) $(COMMON_LIBS)
SERVER_LIBS := -lmicrohttpd -lsqlite3 -luv -pthread $(COMMON_LIBS)
CLI_LIBS := $(COMMON_LIBS)

# ---- Generated code ----------------------------------------------------------

# The ONNX reader and writer (common/onnx*.c) use C structures that protoc-c
# generates at build time from the onnx.proto Debian's libonnx-dev installs;
# no copy of the proto or of the generated code lives in the repository.
ONNX_PROTO_DIR ?= /usr/include/onnx
ONNX_PB_C := $(GEN)/onnx.pb-c.c
ONNX_PB_H := $(GEN)/onnx.pb-c.h
ONNX_PB_OBJ := $(GEN)/onnx.pb-c.o
# The server's migrations, compiled in so that a binary carries its schema.
MIGRATIONS := $(sort $(wildcard migrations/*.sql))
MIGRATIONS_H := $(GEN)/server/migrations_gen.h
CG_TEMPLATES := worker/codegen/rt/model.h.in worker/codegen/rt/rt_head.c.in \
                worker/codegen/rt/rt_tail.c.in worker/codegen/rt/bench.c.in \
                worker/codegen/rt/Makefile.in worker/codegen/rt/rt_sparse.c.in \
                worker/codegen/rt/rt_circ.c.in
CG_TEMPLATES_H := $(GEN)/worker/codegen/cg_templates_gen.h
GEN_HDRS := $(ONNX_PB_H) $(MIGRATIONS_H) $(CG_TEMPLATES_H)
# The opencl target's templates (worker/codegen/cg_emit_ocl.c), a header of their own.
CG_OCL_TEMPLATES := worker/codegen/rt/ocl_kernels.cl.in worker/codegen/rt/ocl_rt.c.in \
                    worker/codegen/rt/ocl_Makefile.in
CG_OCL_TEMPLATES_H := $(GEN)/worker/codegen/cg_ocl_templates_gen.h
GEN_HDRS += $(CG_OCL_TEMPLATES_H)

$(ONNX_PB_C) $(ONNX_PB_H) &: $(ONNX_PROTO_DIR)/onnx.proto
	@mkdir -p $(GEN)
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=$(ONNX_PROTO_DIR) --c_out=$(GEN) onnx.proto

# Generated code: compiled without our warning set, which it was not written for.
$(ONNX_PB_OBJ): $(ONNX_PB_C) $(ONNX_PB_H)
	@echo "  CC      $<"
	$(Q)$(CC) $(filter-out -MMD -MP,$(CPPFLAGS_BASE)) $(OPT) -w -c $< -o $@

$(MIGRATIONS_H): $(MIGRATIONS) tools/gen-migrations.sh
	@mkdir -p $(@D)
	@echo "  GEN     $@"
	$(Q)tools/gen-migrations.sh $(MIGRATIONS) > $@.tmp && mv $@.tmp $@

$(CG_TEMPLATES_H): $(CG_TEMPLATES) tools/gen-embed.sh
	@mkdir -p $(@D)
	@echo "  GEN     $@"
	$(Q)tools/gen-embed.sh DP_WORKER_CODEGEN_CG_TEMPLATES_GEN_H \
	    cg_tmpl_model_h=worker/codegen/rt/model.h.in cg_tmpl_rt_head=worker/codegen/rt/rt_head.c.in \
	    cg_tmpl_rt_tail=worker/codegen/rt/rt_tail.c.in cg_tmpl_bench_c=worker/codegen/rt/bench.c.in \
	    cg_tmpl_makefile=worker/codegen/rt/Makefile.in \
	    cg_tmpl_rt_sparse=worker/codegen/rt/rt_sparse.c.in \
	    cg_tmpl_rt_circ=worker/codegen/rt/rt_circ.c.in > $@.tmp && mv $@.tmp $@

$(CG_OCL_TEMPLATES_H): $(CG_OCL_TEMPLATES) tools/gen-embed.sh
	@mkdir -p $(@D)
	@echo "  GEN     $@"
	$(Q)tools/gen-embed.sh DP_WORKER_CODEGEN_CG_OCL_TEMPLATES_GEN_H \
	    cg_tmpl_ocl_kernels=worker/codegen/rt/ocl_kernels.cl.in \
	    cg_tmpl_ocl_rt=worker/codegen/rt/ocl_rt.c.in \
	    cg_tmpl_ocl_makefile=worker/codegen/rt/ocl_Makefile.in > $@.tmp && mv $@.tmp $@

# ---- Compiling ---------------------------------------------------------------

# One rule compiles every source file; the flags come from its folder. Every
# object waits for the generated headers (order-only: they exist once).
$(BUILD)/%.o: CFLAGS = $(CFLAGS_WK)
$(BUILD)/common/%.o: CFLAGS = $(CFLAGS_STRICT)
$(BUILD)/server/%.o: CFLAGS = $(CFLAGS_STRICT) -pthread
$(BUILD)/worker/nn/%.o: CFLAGS = $(CFLAGS_NN)
$(BUILD)/worker/compress/%.o: CFLAGS = $(CFLAGS_NN)
$(BUILD)/worker/circulant/%.o: CFLAGS = $(CFLAGS_NN)
$(BUILD)/tests/%.o: CFLAGS = $(CFLAGS_TEST)

$(BUILD)/%.o: %.c | $(GEN_HDRS)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# ---- libcommon: errors, allocation, model IR, ONNX, safetensors, HTTP client -

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o) $(ONNX_PB_OBJ)
LIBCOMMON := $(BUILD)/libcommon.a

$(LIBCOMMON): $(COMMON_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

# ---- libnn: the engines (worker/nn training, worker/compress ADMM) -----------

# worker/codegen (the compiler, `dnnpress-worker compile`) joins libnn: it
# runs the engine for the bundle's reference outputs. Its bundle templates
# (worker/codegen/rt/*.in) are compiled in as strings.
NN_SRC := $(wildcard worker/nn/*.c worker/circulant/*.c worker/compress/*.c worker/codegen/*.c)
NN_OBJ := $(NN_SRC:%.c=$(BUILD)/%.o)
LIBNN := $(BUILD)/libnn.a

$(LIBNN): $(NN_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

# ---- dnnpress-worker: offline commands and the task loop ---------------------

# Everything but main() also goes into libwk.a, which the unit tests link.
WK_SRC := $(wildcard worker/cmd/*.c worker/agent/*.c)
WK_OBJ := $(WK_SRC:%.c=$(BUILD)/%.o)
WK_MAIN_OBJ := $(filter %/wk_main.o,$(WK_OBJ))
LIBWK := $(BUILD)/libwk.a
WORKER := $(BUILD)/dnnpress-worker

$(LIBWK): $(filter-out $(WK_MAIN_OBJ),$(WK_OBJ))
	@rm -f $@
	$(Q)ar rcs $@ $^

$(WORKER): $(WK_MAIN_OBJ) $(LIBWK) $(LIBNN) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(WORKER_LIBS)

# ---- dnnpress-server: HTTP API, store, queue, local workers ------------------

# server/cli/ is the command-line client's (next section). The server links
# libcommon only: the job spec it validates submissions with is common/'s.
SRV_SRC := $(wildcard server/*.c)
SRV_OBJ := $(SRV_SRC:%.c=$(BUILD)/%.o)
SRV_MAIN_OBJ := $(BUILD)/server/main.o
LIBSRV := $(BUILD)/libsrv.a
SERVER := $(BUILD)/dnnpress-server

$(LIBSRV): $(filter-out $(SRV_MAIN_OBJ),$(SRV_OBJ))
	@rm -f $@
	$(Q)ar rcs $@ $^

$(SERVER): $(SRV_MAIN_OBJ) $(LIBSRV) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(SERVER_LIBS)

# ---- dnnpress: the command-line client ---------------------------------------

CLI_SRC := $(wildcard server/cli/*.c)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
CLI_MAIN_OBJ := $(BUILD)/server/cli/cli_main.o
LIBCLI := $(BUILD)/libcli.a
CLI := $(BUILD)/dnnpress

$(LIBCLI): $(filter-out $(CLI_MAIN_OBJ),$(CLI_OBJ))
	@rm -f $@
	$(Q)ar rcs $@ $^

$(CLI): $(CLI_MAIN_OBJ) $(LIBCLI) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(CLI_LIBS)

# ---- Unit tests (Criterion; tests/unit/ mirrors the tree) ---------------------

# unit-tests: common/, the worker (engines, commands, task loop) and the CLI.
# server-unit-tests: server/ (its suites open real SQLite files and sockets).
TEST_UTIL_OBJ := $(BUILD)/tests/unit/test_util.o
UNIT_SRC := $(wildcard tests/unit/common/*.c tests/unit/worker/*.c tests/unit/worker/*/*.c \
                       tests/unit/server/cli/*.c)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/%.o) $(TEST_UTIL_OBJ)
UNIT := $(BUILD)/unit-tests
SRV_UNIT_SRC := $(wildcard tests/unit/server/*.c)
SRV_UNIT_OBJ := $(SRV_UNIT_SRC:%.c=$(BUILD)/%.o) $(TEST_UTIL_OBJ)
SRV_UNIT := $(BUILD)/server-unit-tests

$(UNIT): $(UNIT_OBJ) $(LIBWK) $(LIBCLI) $(LIBNN) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(WORKER_LIBS) -lcriterion

$(SRV_UNIT): $(SRV_UNIT_OBJ) $(LIBSRV) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(SERVER_LIBS) -lcriterion

# ---- ONNX node tests (tests/onnx/node_runner.c) -------------------------------

# ONNX's own node test cases through the importer and the engine; the data
# is generated once by Debian's python3-onnx.
NODE_RUNNER := $(BUILD)/onnx-node-tests
NODE_DATA := build/onnx-node-data

$(NODE_RUNNER): $(BUILD)/tests/onnx/node_runner.o $(LIBNN) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(NN_LIBS) $(COMMON_LIBS)

$(NODE_DATA)/.stamp: tests/onnx/gen_node_tests.py
	@rm -rf $(NODE_DATA) && mkdir -p $(NODE_DATA)
	@echo "  GEN     ONNX node test data"
	$(Q)/usr/bin/python3 tests/onnx/gen_node_tests.py $(NODE_DATA) > /dev/null
	@touch $@

onnx-node-tests: $(NODE_RUNNER) $(NODE_DATA)/.stamp
	OMP_NUM_THREADS=2 $(NODE_RUNNER) $(NODE_DATA)/node tests/onnx/node_expected_failures.txt

# ---- Circulant layer micro-benchmark (tests/bench/circ_layer.sh runs it) -----

CIRC_BENCH := $(BUILD)/circ-layer-bench

$(CIRC_BENCH): $(BUILD)/tests/bench/circ_layer.o $(LIBNN) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(NN_LIBS) $(COMMON_LIBS)

# ---- Fuzzers (libFuzzer + ASan + UBSan, built with clang) ---------------------

# Three targets (tests/fuzz/), each with a seed corpus generated at build time:
#   onnx  the ONNX reader and importer (seeds: the worker's own exports)
#   http  the server's request path, raw HTTP into the real server and store
#   json  the job spec parser and the server's JSON body checks
# `make fuzz` runs each of FUZZ_TARGETS for FUZZ_SECONDS, one after the other;
# `make test` for FUZZ_TEST_SECONDS, as many at once as there are cores (each
# gets a core of its own: the same runs in less time). Objects are compiled
# once into build/fuzz/obj (with coverage instrumentation), against the release
# build's generated headers; findings go to build/fuzz/<target>-crash-*.
FUZZ_DIR := build/fuzz
FUZZ_GEN := build/release/gen
FUZZ_TARGETS ?= onnx http json
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 20
FUZZ_CFLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -I. -I$(FUZZ_GEN) -g -O1 -MMD -MP \
               -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
FUZZ_LDFLAGS := -fsanitize=fuzzer,address,undefined
# Inputs are bounded per target: an HTTP connection's bytes, a JSON body.
FUZZ_MAX_LEN_onnx := 65536
FUZZ_MAX_LEN_http := 16384
FUZZ_MAX_LEN_json := 16384
FUZZ_OPTS := -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=30 -print_final_stats=1
FUZZ_ONNX_SRC := common/onnx_pb.c common/onnx_import.c common/onnx_import_ops.c common/onnx_fold.c \
                 common/onnx_import_norm.c common/onnx_import_rnn.c \
                 common/model.c common/op.c common/file.c \
                 common/model_io.c common/alloc.c common/err.c common/log.c common/utf8.c \
                 common/safetensors.c $(FUZZ_GEN)/onnx.pb-c.c
# The server without main(), and all of common/: what dnnpress-server links.
FUZZ_SRV_SRC := $(filter-out server/main.c,$(wildcard server/*.c)) $(wildcard common/*.c) \
                $(FUZZ_GEN)/onnx.pb-c.c
fuzz_obj = $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(1))

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(@D)
	@echo "  CLANG   $<"
	$(Q)clang $(FUZZ_CFLAGS) $(if $(filter $(FUZZ_GEN)/%,$<),-w) -c $< -o $@

$(FUZZ_DIR)/fuzz_onnx: $(call fuzz_obj,tests/fuzz/fuzz_onnx.c $(FUZZ_ONNX_SRC))
	@echo "  LD      $@"
	$(Q)clang $(FUZZ_LDFLAGS) $^ -o $@ -ljansson -lprotobuf-c -lz -lm

$(FUZZ_DIR)/fuzz_http $(FUZZ_DIR)/fuzz_json: $(FUZZ_DIR)/fuzz_%: \
    $(call fuzz_obj,tests/fuzz/fuzz_%.c $(FUZZ_SRV_SRC))
	@echo "  LD      $@"
	$(Q)clang $(FUZZ_LDFLAGS) $^ -o $@ $(SERVER_LIBS)

# Seed corpora, regenerated when their script changes.
$(FUZZ_DIR)/seeds-onnx/.stamp: tests/fuzz/make_seeds.sh
	@rm -rf $(@D)
	tests/fuzz/make_seeds.sh build/release/dnnpress-worker $(@D) && touch $@
$(FUZZ_DIR)/seeds-%/.stamp: tests/fuzz/make_%_seeds.sh
	@rm -rf $(@D)
	tests/fuzz/make_$*_seeds.sh $(@D) && touch $@

fuzz-build: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@$(MAKE) --no-print-directory $(foreach t,$(FUZZ_TARGETS),$(FUZZ_DIR)/fuzz_$(t) \
	    $(FUZZ_DIR)/seeds-$(t)/.stamp)

# One target's run: new inputs go to corpus-<t>, the log to <t>.log.
fuzz-run-%:
	@mkdir -p $(FUZZ_DIR)/corpus-$*
	@echo "  FUZZ    $*, $(FUZZ_SECONDS) s (log: $(FUZZ_DIR)/$*.log)"
	@nice -n 10 $(FUZZ_DIR)/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN_$*) \
	    $(FUZZ_OPTS) -artifact_prefix=$(FUZZ_DIR)/$*- $(FUZZ_DIR)/corpus-$* $(FUZZ_DIR)/seeds-$* \
	    > $(FUZZ_DIR)/$*.log 2>&1 || \
	    { tail -60 $(FUZZ_DIR)/$*.log; echo "fuzz $*: FAILED (inputs in $(FUZZ_DIR))"; exit 1; }
	@grep -E "^Done|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)" \
	    $(FUZZ_DIR)/$*.log | sed "s/^/  $*: /"

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz-run-$$t || exit 1; done

-include $(wildcard $(FUZZ_DIR)/obj/*/*.d $(FUZZ_DIR)/obj/*/*/*.d $(FUZZ_DIR)/obj/*/*/*/*/*.d)

# ---- web: the dashboard (web/, docs/dashboard.md) ------------------------------

# npm ci installs web/package-lock.json's exact versions into web/node_modules
# (once, again when the lock changes); web/build.mjs bundles web/src with
# esbuild into build/MODE/web, which dnnpress-server serves at / (beside the
# binary, or --web-dir). Node is needed to build it, never to run the server.
WEB_SRC := $(wildcard web/src/*.js web/src/*/*.js web/src/*.css web/src/*.html) web/build.mjs
WEB_NPM := web/node_modules/.npm-ci-ok
WEB := $(BUILD)/web/index.html

$(WEB_NPM): web/package.json web/package-lock.json
	@echo "  NPM     web (npm ci)"
	$(Q)cd web && npm ci --no-audit --no-fund --loglevel=error > /dev/null
	@touch $@

$(WEB): $(WEB_SRC) $(WEB_NPM)
	$(Q)node web/build.mjs $(BUILD)/web

web: $(WEB)

# ---- all ---------------------------------------------------------------------

all: $(WORKER) $(SERVER) $(CLI) $(UNIT) $(SRV_UNIT) $(NODE_RUNNER) $(WEB)

# ---- test: one rule, fail-fast ------------------------------------------------

# Cheapest and broadest first: the packages, the source checks, both builds,
# the unit suites under ASan+UBSan (the sanitizer build is part of every run)
# and again in release (kernels at -O3; all but TEST_RELEASE_SKIP), then the
# end-to-end suites: the CLI's training run, the server against a real
# SQLite file (ASan build), whole jobs through server + worker + CLI, ONNX
# (node tests, PyTorch and OpenCV peers) and a short fuzzing run.
# Leaks are checked inside every test body (DP_ASSERT_NO_LEAKS, recoverable
# LSan checks); the check at process exit is off because Criterion 2.4.1's
# runner itself sometimes leaks 48 bytes there, which would fail a green run.
# OMP_WAIT_POLICY=passive: two tests at a time with two OpenMP threads each is
# four threads on CI's two cores, and libgomp's default spinning at every
# barrier then burns the core another test needs (on a loaded machine the
# admm suite took 10x as long).
TEST_ASAN_ENV := ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=leak_check_at_exit=0 OMP_NUM_THREADS=2 \
                 OMP_WAIT_POLICY=passive
# The builds inside make test use every core unless make was given -j itself
# (.ci/run runs a plain `make test`: without this, both builds ran serially).
TEST_J = $(if $(filter -j%,$(MAKEFLAGS)),,-j$(shell nproc))
# Suites the release unit run leaves to the ASan run, which runs every suite:
# their cost is building generated bundles with the system's cc, the same
# work in both modes; the release worker's compiler is checked end to end by
# tests/e2e/compile_matrix.sh (every target) and tests/e2e/job_e2e.py (a
# tuned portable bundle, an opencl one).
TEST_RELEASE_SKIP := cg|cg_ocl|cg_sparse

test: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory check-banned check-headers
	@$(MAKE) --no-print-directory $(TEST_J) MODE=asan all
	@$(MAKE) --no-print-directory $(TEST_J) MODE=release all
	$(TEST_ASAN_ENV) build/asan/unit-tests --jobs=2
	$(TEST_ASAN_ENV) build/asan/server-unit-tests --jobs=2
	OMP_NUM_THREADS=2 build/release/unit-tests --jobs=1 --filter '!($(TEST_RELEASE_SKIP))/*'
	build/release/server-unit-tests --jobs=1
	@tests/e2e/train_short.sh build/release/dnnpress-worker
	@tests/e2e/circulant_compress.sh build/release/dnnpress-worker
	@tests/e2e/server_api.sh build/asan
	@tests/e2e/job_e2e.sh build/release
	@tests/e2e/farm_e2e.sh build/release
	@tests/e2e/latency_job.sh build/release
	@tests/e2e/limits.sh build/release
	@tests/e2e/durability.sh build/release
	@tests/e2e/tls.sh build/release
	@tests/e2e/backup.sh build/release
	@tests/e2e/retention.sh build/release
	@tests/e2e/netns.sh build/release
	@tests/web/run.sh build/release
	@$(MAKE) --no-print-directory MODE=release onnx-node-tests
	@tests/e2e/onnx.sh build/release/dnnpress-worker
	@tests/e2e/mobile_job.sh build/release
	@tests/e2e/compile_matrix.sh build/release/dnnpress-worker
	@$(MAKE) --no-print-directory $(TEST_J) fuzz-build
	@$(MAKE) --no-print-directory $(TEST_J) -Otarget $(FUZZ_TARGETS:%=fuzz-run-%) \
	    FUZZ_SECONDS=$(FUZZ_TEST_SECONDS)
	@$(MAKE) --no-print-directory deploy-check

# All twelve torchvision architectures of tests/e2e/onnx.sh, AlexNet and
# VGG11-BN included (make test runs the other ten: minutes and 2 GB less).
.PHONY: test-onnx-zoo
test-onnx-zoo: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@TV_MODELS=all tests/e2e/onnx.sh build/release/dnnpress-worker

# ---- deploy/ -------------------------------------------------------------------

# The units (systemd-analyze verify and security), the Kubernetes manifests
# against the API schemas (npm's kubernetes-models, installed under build/
# from tests/deploy's lockfile); docs/operations.md.
DEPLOY_NPM := build/deploy-npm
$(DEPLOY_NPM)/.stamp: tests/deploy/package.json tests/deploy/package-lock.json
	@rm -rf $(DEPLOY_NPM) && mkdir -p $(DEPLOY_NPM)
	@cp tests/deploy/package.json tests/deploy/package-lock.json $(DEPLOY_NPM)/
	@echo "  NPM     $(DEPLOY_NPM)"
	$(Q)cd $(DEPLOY_NPM) && npm ci --no-audit --no-fund --loglevel=error > /dev/null
	@touch $@

.PHONY: deploy-check
deploy-check: $(DEPLOY_NPM)/.stamp
	@tests/deploy/check.sh build/release $(DEPLOY_NPM)/node_modules

# The container image from Debian's packages (mmdebstrap + podman, no
# registry); test-image also runs a job in it (minutes: not part of test).
image: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tools/image.sh build build/release

test-image: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tools/image.sh test build/release

# ---- demo, bench -------------------------------------------------------------

demo: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tools/demo.sh build/release

bench: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tests/bench/run.sh build/release/dnnpress-worker
	@tests/bench/server_wrk.sh build/release
	@tests/bench/sha256.sh build/release
	@tests/bench/compile.sh build/release/dnnpress-worker
	@tests/bench/farm.sh build/release
	@tests/bench/circulant.sh build/release/dnnpress-worker

# Block-circulant layers against their dense models (issue 15): layer time
# of the FFT form against GEMM, lenet-300-100 / lenet5 FC layers and
# lstm-fmnist's LSTM circulant at several block sizes, ADMM conversion
# against training from scratch, PyTorch's nn.LSTM as the dense peer
# (docs/benchmarks.md, "Block-circulant layers"; about 20 minutes of a quiet 2-core machine).
bench-circulant: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tests/bench/circulant.sh build/release/dnnpress-worker

# Generated code (dnnpress-worker compile) against PyTorch and ONNX Runtime at
# batch 1, plus the storage table; installs onnxruntime-node into build/ort
# with npm on first use (docs/benchmarks.md, "Compiled models").
bench-compile: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tests/bench/compile.sh build/release/dnnpress-worker

# ADMM against the magnitude baseline at equal epoch budgets: LeNet-300-100,
# LeNet-5 (also PyTorch-trained, imported through ONNX), quantization and
# resnet20-fmnist, in 1-thread lanes, resumable (long: 1 h 55 min on a quiet
# 2-core machine, 2026-12-02; ROWS=REGEX runs a subset; see docs/benchmarks.md).
bench-compress: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tests/bench/compress.sh build/release/dnnpress-worker

# ---- Checks ------------------------------------------------------------------

# Every C file the repository tracks (generated code lives under build/).
C_FILES := $(sort $(wildcard common/*.[ch] server/*.[ch] server/cli/*.[ch] worker/*.[ch] \
                             worker/*/*.[ch] tests/*/*.[ch] tests/*/*/*.[ch] tests/*/*/*/*.[ch]))
HEADERS := $(filter %.h,$(filter-out tests/%,$(C_FILES)))

check: check-banned check-headers
	@clang-format --dry-run --Werror $(C_FILES)
	@echo "format: all $(words $(C_FILES)) C files formatted"

# Raw allocation and unsafe string functions are banned outside common/alloc.c
# (STYLE rule 17): all allocation goes through dp_malloc and friends.
check-banned:
	@tools/check-banned.sh

# STYLE rule 4: every header compiles alone.
check-headers: $(GEN_HDRS)
	@for h in $(HEADERS); do \
	  echo "#include \"$$h\"" | $(CC) $(filter-out -MMD -MP,$(CPPFLAGS_BASE)) $(WARN) \
	      -fsyntax-only -x c - || exit 1; \
	done; echo "headers: all $(words $(HEADERS)) self-contained"

format:
	clang-format -i $(C_FILES)

clean:
	rm -rf build

-include $(wildcard $(BUILD)/*.d $(BUILD)/*/*.d $(BUILD)/*/*/*.d $(BUILD)/*/*/*/*.d \
                    $(BUILD)/*/*/*/*/*.d)

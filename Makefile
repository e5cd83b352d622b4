# dnnpress: one non-recursive Makefile.
#
#   make deps            install the Debian packages the project needs (idempotent)
#   make [all]           build everything for MODE (debug|asan|release; default release)
#   make test            deps, then the Criterion suites under ASan+UBSan and in release,
#                        then a shortened real Fashion-MNIST training run
#   make demo            deps, build, the server with a local worker, a LeNet-5 Fashion-MNIST
#                        compression job submitted and followed with the CLI, its report
#   make bench           this engine against PyTorch, side by side (docs/benchmarks.md)
#   make check           banned-function grep, self-contained headers, format check
#   make clean
#
# Every mode writes only under build/$(MODE)/.

MODE ?= release
BUILD := build/$(MODE)

CC ?= cc
ifeq ($(CC),cc)
CC := gcc
endif

WARN := -Wall -Wextra -Werror -Wpedantic -Wshadow -Wstrict-prototypes \
        -Wmissing-prototypes -Wformat=2 -Wvla
# common/ and server/ are held to the stricter conversion rules (STYLE rule 39).
WARN_STRICT := -Wconversion -Wsign-conversion

CPPFLAGS_BASE := -std=c11 -D_POSIX_C_SOURCE=200809L -I. -MMD -MP
LIBS := -ldnnl -lopenblas -ljansson -lz -lm
# ---- task loop and CLI (issue 5, client) ----
LIBS += -luv -lcurl
CLI_LIBS := -ljansson -lcurl -lz -lm
# ---- end task loop and CLI ----

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

CFLAGS_COMMON := $(CPPFLAGS_BASE) $(WARN) $(WARN_STRICT) $(OPT)
# The engine's kernels may use -O3 (rule 39); OpenMP slices the outermost loops.
CFLAGS_NN := $(CPPFLAGS_BASE) $(WARN) $(KOPT) -fopenmp
CFLAGS_WK := $(CPPFLAGS_BASE) $(WARN) $(OPT) -fopenmp
LDFLAGS := $(SANLD) -fopenmp

# Quiet by default: one line per file; `make V=1` shows the commands.
ifeq ($(V),1)
Q :=
else
Q := @
endif

COMMON_SRC := $(wildcard common/*.c)
NN_SRC := $(wildcard worker/nn/*.c) $(wildcard worker/compress/*.c)
WK_SRC := $(wildcard worker/*.c)
TEST_SRC := $(wildcard tests/unit/common/*.c) $(wildcard tests/unit/worker/nn/*.c) \
            $(wildcard tests/unit/worker/compress/*.c) tests/unit/test_util.c
# ---- task loop and CLI (issue 5, client) ----
# The worker's objects minus main() form libwk.a and the CLI's minus main()
# libcli.a, so the unit tests link the task loop and the CLI's pure parts.
CLI_SRC := $(wildcard server/cli/*.c)
TEST_SRC += $(wildcard tests/unit/worker/*.c) $(wildcard tests/unit/server/cli/*.c)
# ---- end task loop and CLI ----

COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
NN_OBJ := $(NN_SRC:%.c=$(BUILD)/%.o)
WK_OBJ := $(WK_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
# ---- task loop and CLI (issue 5, client) ----
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
WKLIB_OBJ := $(filter-out $(BUILD)/worker/wk_main.o,$(WK_OBJ))
CLILIB_OBJ := $(filter-out $(BUILD)/server/cli/cli_main.o,$(CLI_OBJ))
LIBWK := $(BUILD)/libwk.a
LIBCLI := $(BUILD)/libcli.a
CLI := $(BUILD)/dnnpress
# ---- end task loop and CLI ----

LIBCOMMON := $(BUILD)/libcommon.a
LIBNN := $(BUILD)/libnn.a
WORKER := $(BUILD)/dnnpress-worker
UNIT := $(BUILD)/unit-tests

.PHONY: all deps test unit demo bench bench-compress check check-banned check-headers format clean
.DEFAULT_GOAL := all

all: $(WORKER) $(UNIT) $(CLI)

$(BUILD)/common/%.o: common/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_COMMON) -c $< -o $@

$(BUILD)/worker/nn/%.o: worker/nn/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_NN) -c $< -o $@

$(BUILD)/worker/compress/%.o: worker/compress/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_NN) -c $< -o $@

$(BUILD)/worker/%.o: worker/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_WK) -c $< -o $@

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_WK) -Wno-missing-prototypes -c $< -o $@

$(LIBCOMMON): $(COMMON_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(LIBNN): $(NN_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(WORKER): $(WK_OBJ) $(LIBNN) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LIBS)

$(UNIT): $(TEST_OBJ) $(LIBWK) $(LIBCLI) $(LIBNN) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LIBS) -lcriterion

# ---- task loop and CLI (issue 5, client) ----
# The CLI sits beside the server (server/cli/) and is held to server/'s
# stricter warnings.
$(BUILD)/server/cli/%.o: server/cli/%.c
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_COMMON) -c $< -o $@

$(LIBWK): $(WKLIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(LIBCLI): $(CLILIB_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(CLI): $(BUILD)/server/cli/cli_main.o $(LIBCLI) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(SANLD) $^ -o $@ $(CLI_LIBS)

# What `make test` runs for the task loop and the CLI (an extra prerequisite,
# so the shared recipe stays untouched; their unit suites are in unit-tests):
# whole jobs through the real server, local worker and CLI on loopback.
.PHONY: test-client
test: test-client
test-client: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tests/e2e/job_e2e.sh build/release
# ---- end task loop and CLI ----

# ---- dnnpress-server (server/, migrations/) ---------------------------------
# server/cli/ is the command-line client's (built by its own block).
SRV_SRC := $(filter-out server/main.c,$(wildcard server/*.c))
SRV_OBJ := $(SRV_SRC:%.c=$(BUILD)/%.o)
SRV_MAIN_OBJ := $(BUILD)/server/main.o
SRV_TEST_SRC := $(wildcard tests/unit/server/*.c) tests/unit/test_util.c
SRV_TEST_OBJ := $(SRV_TEST_SRC:%.c=$(BUILD)/%.o)
LIBSRV := $(BUILD)/libsrv.a
SERVER := $(BUILD)/dnnpress-server
SRV_UNIT := $(BUILD)/server-unit-tests
SRV_GEN := $(BUILD)/gen/server/migrations_gen.h
# The job spec validator is the worker's own (worker/compress/spec.c, in libnn):
# submissions are checked by exactly the code that will run them.
SRV_LIBS := -lmicrohttpd -lsqlite3 -luv -lprotobuf-c -ljansson -lz -lm -pthread

all: $(SERVER) $(SRV_UNIT)

$(SRV_GEN): $(sort $(wildcard migrations/*.sql)) tools/gen-migrations.sh
	@mkdir -p $(@D)
	@echo "  GEN     $@"
	$(Q)tools/gen-migrations.sh $(sort $(wildcard migrations/*.sql)) > $@.tmp && mv $@.tmp $@

$(BUILD)/server/%.o: server/%.c $(SRV_GEN)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_COMMON) -I$(BUILD)/gen -pthread -c $< -o $@

$(BUILD)/tests/unit/server/%.o: tests/unit/server/%.c $(SRV_GEN)
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS_WK) -I$(BUILD)/gen -Wno-missing-prototypes -c $< -o $@

$(LIBSRV): $(SRV_OBJ)
	@rm -f $@
	$(Q)ar rcs $@ $^

$(SERVER): $(SRV_MAIN_OBJ) $(LIBSRV) $(LIBNN) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(SRV_LIBS)

$(SRV_UNIT): $(SRV_TEST_OBJ) $(LIBSRV) $(LIBNN) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(SRV_LIBS) -lcriterion

# make test, bench, check and format reach the server through these extra
# prerequisites (kept here so that the shared recipes stay untouched).
# test-server builds what it runs; make test then finds it built.
test: test-server
bench: bench-server
check: check-server
format: format-server
.PHONY: test-server bench-server check-server format-server

test-server: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=asan all
	@$(MAKE) --no-print-directory MODE=release all
	ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=leak_check_at_exit=0 build/asan/server-unit-tests --jobs=2
	build/release/server-unit-tests --jobs=1
	@tests/e2e/server_api.sh build/asan

bench-server: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tests/bench/server_wrk.sh build/release

check-server:
	@clang-format --dry-run --Werror $(wildcard server/*.c server/*.h tests/unit/server/*.c)
	@for h in server/*.h; do \
	  echo "#include \"$$h\"" | $(CC) $(filter-out -MMD -MP,$(CPPFLAGS_BASE)) $(WARN) \
	      -fsyntax-only -x c - || exit 1; \
	done; echo "server headers: all self-contained"

format-server:
	clang-format -i $(wildcard server/*.c server/*.h tests/unit/server/*.c)

-include $(SRV_OBJ:.o=.d) $(SRV_MAIN_OBJ:.o=.d) $(SRV_TEST_OBJ:.o=.d)
# ---- end dnnpress-server ----------------------------------------------------

# ---- ONNX ------------------------------------------------------------------
# The ONNX reader and writer (common/onnx*.c) use C structures that protoc-c
# generates at build time from the onnx.proto Debian's libonnx-dev installs;
# no copy of the proto or of the generated code lives in the repository.
ONNX_PROTO_DIR ?= /usr/include/onnx
GEN := $(BUILD)/gen
ONNX_PB_C := $(GEN)/onnx.pb-c.c
ONNX_PB_H := $(GEN)/onnx.pb-c.h
ONNX_PB_OBJ := $(BUILD)/gen/onnx.pb-c.o
LIBS += -lprotobuf-c

$(ONNX_PB_C) $(ONNX_PB_H) &: $(ONNX_PROTO_DIR)/onnx.proto
	@mkdir -p $(GEN)
	@echo "  PROTOC  $<"
	$(Q)protoc-c --proto_path=$(ONNX_PROTO_DIR) --c_out=$(GEN) onnx.proto

# Generated code: compiled without our warning set, which it was not written for.
$(ONNX_PB_OBJ): $(ONNX_PB_C) $(ONNX_PB_H)
	@echo "  CC      $<"
	$(Q)$(CC) $(filter-out -MMD -MP,$(CPPFLAGS_BASE)) -I$(GEN) $(OPT) -w -c $< -o $@

$(LIBCOMMON): $(ONNX_PB_OBJ)
# Everything that includes onnx.pb-c.h finds it in $(GEN) and waits for it.
# (Explicit object lists: a recipe-less pattern rule would cancel the compile rules.)
ONNX_GEN_USERS := $(filter $(BUILD)/common/onnx%,$(COMMON_OBJ)) $(WK_OBJ) $(TEST_OBJ)
$(ONNX_GEN_USERS): | $(ONNX_PB_H)
$(BUILD)/common/onnx%.o: CFLAGS_COMMON += -I$(GEN)
$(BUILD)/worker/%.o: CFLAGS_WK += -I$(GEN)
$(BUILD)/tests/%.o: CFLAGS_WK += -I$(GEN)

# ONNX's node tests through the importer and the engine (tests/onnx/node_runner.c).
NODE_RUNNER := $(BUILD)/onnx-node-tests
NODE_DATA := build/onnx-node-data
all: $(NODE_RUNNER)
$(BUILD)/tests/onnx/node_runner.o: | $(ONNX_PB_H)
$(NODE_RUNNER): $(BUILD)/tests/onnx/node_runner.o $(LIBNN) $(LIBCOMMON)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) $^ -o $@ $(LIBS)

$(NODE_DATA)/.stamp: tests/onnx/gen_node_tests.py
	@rm -rf $(NODE_DATA) && mkdir -p $(NODE_DATA)
	@echo "  GEN     ONNX node test data"
	$(Q)/usr/bin/python3 tests/onnx/gen_node_tests.py $(NODE_DATA) > /dev/null
	@touch $@

.PHONY: onnx-node-tests
onnx-node-tests: $(NODE_RUNNER) $(NODE_DATA)/.stamp
	OMP_NUM_THREADS=2 $(NODE_RUNNER) $(NODE_DATA)/node tests/onnx/node_expected_failures.txt

# libFuzzer target for the ONNX reader and importer, built with clang in its
# own directory (ASan + UBSan + the fuzzer's coverage), with a seed corpus
# generated at build time. `make fuzz` runs it FUZZ_SECONDS (default 60);
# `make test` runs it for FUZZ_TEST_SECONDS.
FUZZ_DIR := build/fuzz
FUZZ_BIN := $(FUZZ_DIR)/fuzz_onnx
FUZZ_SECONDS ?= 60
FUZZ_TEST_SECONDS ?= 20
FUZZ_FLAGS := -std=c11 -D_POSIX_C_SOURCE=200809L -I. -Ibuild/release/gen -g -O1 \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_SRC := tests/fuzz/fuzz_onnx.c common/onnx_pb.c common/onnx_import.c common/onnx_import_ops.c \
            common/model.c common/op.c common/file.c \
            common/model_io.c common/alloc.c common/err.c common/log.c common/utf8.c \
            common/safetensors.c build/release/gen/onnx.pb-c.c
.PHONY: fuzz fuzz-build
fuzz-build:
	@$(MAKE) --no-print-directory MODE=release all
	@mkdir -p $(FUZZ_DIR)
	@echo "  CLANG   $(FUZZ_BIN)"
	$(Q)clang $(FUZZ_FLAGS) $(FUZZ_SRC) -o $(FUZZ_BIN) -ljansson -lprotobuf-c -lz -lm
	@[ -f $(FUZZ_DIR)/seeds/.stamp ] || { tests/fuzz/make_seeds.sh build/release/dnnpress-worker \
	    $(FUZZ_DIR)/seeds && touch $(FUZZ_DIR)/seeds/.stamp; }
fuzz: fuzz-build
	@mkdir -p $(FUZZ_DIR)/corpus
	@echo "  FUZZ    $(FUZZ_BIN), $(FUZZ_SECONDS) s (log: $(FUZZ_DIR)/fuzz.log)"
	@$(FUZZ_BIN) -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -malloc_limit_mb=1024 \
	    -max_len=65536 -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/ \
	    $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds > $(FUZZ_DIR)/fuzz.log 2>&1 || \
	    { tail -60 $(FUZZ_DIR)/fuzz.log; echo "fuzz: FAILED (inputs in $(FUZZ_DIR))"; exit 1; }
	@grep -E "^Done|^stat::(new_units_added|peak_rss_mb)" $(FUZZ_DIR)/fuzz.log

# What `make test` runs for ONNX (as an extra prerequisite, so the shared
# recipe stays untouched): the node tests, the end-to-end script against
# PyTorch, onnx.checker and OpenCV, and a short fuzzing run.
.PHONY: test-onnx
test: test-onnx
test-onnx: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release onnx-node-tests
	@tests/e2e/onnx.sh build/release/dnnpress-worker
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_TEST_SECONDS)

# ---- Dependencies ----------------------------------------------------------

DEPS_STAMP := build/.deps-ok
deps:
	@tools/deps.sh
	@mkdir -p build && touch $(DEPS_STAMP)

$(DEPS_STAMP):
	@tools/deps.sh
	@mkdir -p build && touch $@

# ---- Test, demo, bench -----------------------------------------------------

# The unit suites run under ASan+UBSan (the sanitizer build is part of every
# test run) and again in release, where the kernels are built with -O3. Then
# a shortened real training run must reach 88% on Fashion-MNIST.
# Leaks are checked inside every test body (DP_ASSERT_NO_LEAKS, recoverable
# LSan checks); the check at process exit is off because Criterion 2.4.1's
# runner itself sometimes leaks 48 bytes there, which would fail a green run.
test: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory check-banned
	@$(MAKE) --no-print-directory MODE=asan all
	@$(MAKE) --no-print-directory MODE=release all
	ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=leak_check_at_exit=0 OMP_NUM_THREADS=2 \
	    build/asan/unit-tests --jobs=2
	OMP_NUM_THREADS=2 build/release/unit-tests --jobs=1
	@tests/e2e/train_short.sh build/release/dnnpress-worker

unit: all
	OMP_NUM_THREADS=2 $(UNIT) --jobs=2

demo: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tools/demo.sh build/release

bench: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tests/bench/run.sh build/release/dnnpress-worker

# ADMM against the magnitude baseline on Fashion-MNIST LeNet-5 (long: about
# 4 minutes per run on a quiet 2-core machine; see docs/benchmarks.md).
bench-compress: $(DEPS_STAMP)
	@$(MAKE) --no-print-directory MODE=release all
	@tests/bench/compress_lenet.sh build/release/dnnpress-worker

# ---- Checks ----------------------------------------------------------------

check: check-banned check-headers
	@clang-format --dry-run --Werror $(COMMON_SRC) $(NN_SRC) $(WK_SRC) $(wildcard common/*.h worker/*.h worker/nn/*.h worker/compress/*.h) $(CLI_SRC) $(wildcard server/cli/*.h)

# Raw allocation and unsafe string functions are banned outside common/alloc.c
# (STYLE rule 17): all allocation goes through dp_malloc and friends.
check-banned:
	@tools/check-banned.sh

check-headers:
	@for h in common/*.h worker/*.h worker/nn/*.h worker/compress/*.h $(wildcard server/cli/*.h); do \
	  echo "#include \"$$h\"" | $(CC) $(filter-out -MMD -MP,$(CPPFLAGS_BASE)) $(WARN) \
	      -fsyntax-only -x c - || exit 1; \
	done; echo "headers: all self-contained"

format:
	clang-format -i $(COMMON_SRC) $(NN_SRC) $(WK_SRC) $(wildcard common/*.h worker/*.h worker/nn/*.h worker/compress/*.h) $(CLI_SRC) $(wildcard server/cli/*.h)

clean:
	rm -rf build

-include $(COMMON_OBJ:.o=.d) $(NN_OBJ:.o=.d) $(WK_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

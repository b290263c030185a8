# raftfs build. `make` builds bin/; `make test` installs deps, builds with ASan+UBSan and
# runs every test; `make test-long` runs the long randomized suites.

CC      ?= cc
GEN     := build/gen
CFLAGS_BASE := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
               -Wmissing-prototypes -g -I. -I$(GEN)
RELEASE_CFLAGS := $(CFLAGS_BASE) -O2
ASAN_CFLAGS    := $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
                  -fno-sanitize-recover=undefined
LDLIBS  := -lleveldb -lprotobuf-c -lpthread

MODE ?= release
ifeq ($(MODE),asan)
  CFLAGS := $(ASAN_CFLAGS)
  LDFLAGS := -fsanitize=address,undefined
  OUT := build/asan
else
  CFLAGS := $(RELEASE_CFLAGS)
  LDFLAGS :=
  OUT := build/release
endif

# Programs: a main() lives only in files named *_main.c (and tests/bench files).
MAINS     := $(wildcard */*_main.c tests/*/*_main.c)
LIB_SRC   := $(filter-out $(MAINS),$(wildcard common/*.c raft/*.c proto/*.c rpc/*.c server/*.c \
               kv/*.c meta/*.c fs/*.c))
PROTO_SRC := $(wildcard proto/*.proto)
PROTO_GEN := $(PROTO_SRC:proto/%.proto=$(GEN)/proto/%.pb-c.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(OUT)/%.o) $(PROTO_GEN:$(GEN)/%.c=$(OUT)/gen/%.o)
TEST_LIB_SRC := $(filter-out $(MAINS),$(wildcard tests/lib/*.c))
TEST_LIB_OBJ := $(TEST_LIB_SRC:%.c=$(OUT)/%.o)
TOOLS_SRC := $(filter-out $(MAINS),$(wildcard tools/*.c))
TOOLS_OBJ := $(TOOLS_SRC:%.c=$(OUT)/%.o)
PROGRAMS  := raftfs-shard raftfs-meta raftfs raftfs-proxy raftfs-mount
# raftfs-mount (mount/): the FUSE daemon, the only code built against libfuse3.
FUSE_CFLAGS := $(shell pkg-config --cflags fuse3 2>/dev/null)
FUSE_LIBS   := $(shell pkg-config --libs fuse3 2>/dev/null)
MOUNT_SRC := $(filter-out $(MAINS),$(wildcard mount/*.c))
MOUNT_OBJ := $(MOUNT_SRC:%.c=$(OUT)/%.o)
SIM_SRC   := $(filter-out tests/sim/sim_main.c,$(wildcard tests/sim/*.c))
SIM_OBJ   := $(SIM_SRC:%.c=$(OUT)/%.o)
UNIT_SRC  := $(wildcard tests/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:tests/unit/%.c=$(OUT)/tests/%)
UNIT_HELP := $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c))
UNIT_HOBJ := $(UNIT_HELP:%.c=$(OUT)/%.o)
INTER_SRC := $(wildcard tests/interaction/*.c)
INTER_OBJ := $(INTER_SRC:%.c=$(OUT)/%.o)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(OUT)/bench/%)

.PHONY: all bins deps test test-unit test-sim test-interact test-long bench clean format \
        format-check fuzz

all: bins

PROG_BIN  := $(PROGRAMS:%=$(OUT)/bin/%)

bins: $(OUT)/bin/raftfs-sim $(OUT)/bin/raftfs-interact $(PROG_BIN) $(UNIT_BIN) $(BENCH_BIN)
	@mkdir -p bin
	cp $(OUT)/bin/raftfs-sim $(OUT)/bin/raftfs-interact $(PROG_BIN) bin/
	@for b in $(BENCH_BIN); do cp $$b bin/; done

$(GEN)/proto/%.pb-c.c $(GEN)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(GEN)/proto
	protoc-c --proto_path=proto --c_out=$(GEN)/proto $<

$(OUT)/gen/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-missing-prototypes -MMD -MP -c $< -o $@

$(OUT)/%.o: %.c | $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(OUT)/bin/raftfs-shard: $(OUT)/server/shard_main.o $(OUT)/libraftfs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(OUT)/bin/raftfs-meta: $(OUT)/meta/meta_main.o $(OUT)/libraftfs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(OUT)/bin/raftfs: $(OUT)/tools/raftfs_main.o $(TOOLS_OBJ) $(OUT)/libraftfs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(OUT)/bin/raftfs-proxy: $(OUT)/tests/proxy/proxy_main.o $(TEST_LIB_OBJ) $(OUT)/libraftfs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(MOUNT_OBJ) $(OUT)/mount/mount_main.o: CFLAGS += $(FUSE_CFLAGS)

$(OUT)/bin/raftfs-mount: $(OUT)/mount/mount_main.o $(MOUNT_OBJ) $(OUT)/libraftfs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(FUSE_LIBS) $(LDLIBS)

# bench/passthrough: a libfuse3 passthrough of a local directory, the baseline of
# bench/fs_vs_passthrough.sh; linked with libfuse3 only (not the bench rule above).
$(OUT)/bench/passthrough.o: CFLAGS += $(FUSE_CFLAGS)

$(OUT)/bench/passthrough: $(OUT)/bench/passthrough.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(FUSE_LIBS)

$(OUT)/libraftfs.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(OUT)/bin/raftfs-sim: $(OUT)/tests/sim/sim_main.o $(SIM_OBJ) $(OUT)/libraftfs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(OUT)/bin/raftfs-interact: $(INTER_OBJ) $(OUT)/libraftfs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(OUT)/tests/%: $(OUT)/tests/unit/%.o $(UNIT_HOBJ) $(SIM_OBJ) $(TEST_LIB_OBJ) $(OUT)/libraftfs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

$(OUT)/bench/%: $(OUT)/bench/%.o $(SIM_OBJ) $(OUT)/libraftfs.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# libFuzzer targets (tests/fuzz/fuzz_*.c), built with clang into build/fuzz/ from the library
# sources compiled again with coverage instrumentation, ASan and UBSan.
FUZZ_CC     := clang
FUZZ_OUT    := build/fuzz
FUZZ_CFLAGS := $(filter-out -Werror,$(CFLAGS_BASE)) -O1 -fno-omit-frame-pointer \
               -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_SRC    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES  := $(FUZZ_SRC:tests/fuzz/%.c=%)
FUZZ_BIN    := $(FUZZ_NAMES:%=$(FUZZ_OUT)/%)
FUZZ_OBJ    := $(LIB_SRC:%.c=$(FUZZ_OUT)/obj/%.o) $(PROTO_GEN:$(GEN)/%.c=$(FUZZ_OUT)/obj/gen/%.o)
FUZZ_SECONDS ?= 60

fuzz: $(FUZZ_BIN)

$(FUZZ_OUT)/obj/gen/%.o: $(GEN)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -Wno-missing-prototypes -MMD -MP -c $< -o $@

$(FUZZ_OUT)/obj/%.o: %.c | $(PROTO_GEN)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_OUT)/libraftfs.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_OUT)/%: tests/fuzz/%.c $(FUZZ_OUT)/libraftfs.a | $(PROTO_GEN)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror -fsanitize=fuzzer -MMD -MP -MF $@.d -o $@ $< \
	  $(FUZZ_OUT)/libraftfs.a $(LDLIBS)

# Debian packages the build and the tests need; installed only when missing.
DEB_PKGS := build-essential pkg-config clang-format libfuse3-dev fuse3 libprotobuf-c-dev \
            protobuf-c-compiler libleveldb-dev libcmocka-dev clang libclang-rt-14-dev \
            iproute2 iptables
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || \
	    missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root to install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "deps: all installed"; fi

SIM_SEEDS ?= 1000
LONG_SEEDS ?= 100000

test: deps
	$(MAKE) format-check
	$(MAKE) MODE=release bins   # the optimised build must compile too (-O2 warns more)
	$(MAKE) MODE=asan test-unit test-interact test-sim

test-unit: $(UNIT_BIN) $(PROG_BIN)
	@fail=0; for t in $(UNIT_BIN); do \
	  echo "== $$t"; RAFTFS_BIN_DIR=$(OUT)/bin $$t || fail=1; done; \
	if [ $$fail != 0 ]; then echo "unit tests FAILED"; exit 1; fi

test-interact: $(OUT)/bin/raftfs-interact
	$(OUT)/bin/raftfs-interact tests/interaction/testdata/*.txt

test-sim: $(OUT)/bin/raftfs-sim
	$(OUT)/bin/raftfs-sim --nodes 3 --seeds $(SIM_SEEDS) --first-seed 1 --steps 5000
	$(OUT)/bin/raftfs-sim --nodes 5 --seeds $(SIM_SEEDS) --first-seed 100001 --steps 5000

test-long: deps
	$(MAKE) MODE=release $(OUT)/bin/raftfs-sim
	build/release/bin/raftfs-sim --nodes 3 --seeds $(LONG_SEEDS) --first-seed 1 --steps 5000
	build/release/bin/raftfs-sim --nodes 5 --seeds $(LONG_SEEDS) --first-seed 1000001 --steps 5000
	$(MAKE) fuzz
	@for f in $(FUZZ_NAMES); do echo "== fuzz $$f ($(FUZZ_SECONDS) s)"; \
	  mkdir -p $(FUZZ_OUT)/corpus/$$f && \
	  $(FUZZ_OUT)/$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_OUT)/$$f- $(FUZZ_OUT)/corpus/$$f tests/fuzz/corpus/$$f || exit 1; \
	done

bench: 
	$(MAKE) MODE=release bins
	@for b in $(BENCH_BIN); do echo "== $$b"; $$b; done

# Put throughput and latency of raftfs vs a 3-member etcd, side by side (not part of
# make test; installs etcd when missing). Options: make bench-etcd BENCH_ETCD_ARGS='--help'
.PHONY: bench-etcd
bench-etcd:
	bench/etcd_vs_raftfs.sh $(BENCH_ETCD_ARGS)

# Put throughput on 1, 2 and 3 shard groups and the stall of a key while its bucket moves
# (not part of make test). Options: make bench-shard BENCH_SHARD_ARGS='--help'
.PHONY: bench-shard
bench-shard:
	bench/shard_scaling.sh $(BENCH_SHARD_ARGS)

# Transactions on one group vs two groups (not part of make test).
# Options: make bench-txn BENCH_TXN_ARGS='--help'
.PHONY: bench-txn
bench-txn:
	bench/txn_groups.sh $(BENCH_TXN_ARGS)

# raftfs vs a passthrough FUSE mount vs the local directory under fio (not part of make test;
# installs fio when missing). Options: make bench-fs BENCH_FS_ARGS='--help'
.PHONY: bench-fs
bench-fs:
	bench/fs_vs_passthrough.sh $(BENCH_FS_ARGS)

# A whole cluster on this machine, mounted at ./mnt: a meta group and two shard groups of three
# servers, state under ./raftfs-cluster (docs/cluster.md). Stop it with bin/raftfs cluster down.
.PHONY: demo
demo: deps
	$(MAKE) MODE=release bins
	bin/raftfs cluster up

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h') && echo 'format: ok'

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
.SECONDARY:

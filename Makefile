# gptkit build. One library (build/libgptkit.a), one binary (build/gptkit), test binaries.
#
#   make            build everything (prints a one-screen summary of optional pieces found)
#   make test       build and run the test suite; ends with "N passed, N failed, N skipped"
#   make bench      run the benchmarks (slow; needs PyTorch, see bench/README.md)
#   make asan       test suite under AddressSanitizer + UBSan (+ LeakSanitizer), in build-asan/
#
# Opt-outs: NO_OPENMP=1, NO_BLAS=1, NO_DNNL=1, NO_PCRE2=1 (custom tokenizer split regexes), NO_MHD=1 (no `gptkit serve`),
# NO_GMP=1 (calc tool), NO_MPI=1 (no data-parallel training under mpirun), NO_CUDA=1 (no `--device cuda`),
# NO_NCCL=1 (no NCCL in the CUDA plugin).  Sources are picked up by wildcard: adding a .c file
# under src/<module>/ needs no edit here.
# WERROR=1 turns warnings into errors (CI and scripts/test.sh build so; a plain `make` stays lenient, so a newer
# compiler's new warning never stops a user's build). Extra flags on the command line add to ours rather than
# replace them (`make CFLAGS+=-Werror` and `make CFLAGS=-Werror` both keep -std=c11 -Isrc ...): hence `override`.

CC      ?= gcc
OPT     ?= -O2
# -fno-math-errno: sqrtf and friends never set errno (nothing reads it), so loops using them vectorise;
# -fno-trapping-math: nothing reads the floating-point exception flags, so a loop with a select (kern_vexpf's
# clamps) may compute both sides — without it GCC vectorises such loops only where AVX-512 masks them (the AVX2
# and baseline clones stayed scalar). Values are unchanged: only spurious exception flags become possible.
override CFLAGS  += -std=c11 -D_GNU_SOURCE $(OPT) -fno-math-errno -fno-trapping-math -g -Wall -Wextra -Wno-unused-parameter -Isrc -MMD -MP
override LDLIBS  += -lm -lpthread
BUILD   ?= build
SAN     ?=
WERROR  ?=
ifneq ($(WERROR),)
  override CFLAGS += -Werror
endif
override CFLAGS  += $(SAN)
override LDFLAGS += $(SAN)

# ---- optional pieces, detected by feature ----
FEATURES :=
ifeq ($(NO_OPENMP),)
  ifeq ($(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo y),y)
    override CFLAGS  += -fopenmp
    override LDFLAGS += -fopenmp
    FEATURES += openmp
  endif
endif
ifeq ($(NO_BLAS),)
  ifeq ($(shell pkg-config --exists openblas 2>/dev/null && echo y),y)
    override CFLAGS  += -DGK_HAVE_BLAS $(shell pkg-config --cflags openblas)
    override LDLIBS  += $(shell pkg-config --libs openblas)
    FEATURES += openblas
  endif
endif
ifeq ($(NO_DNNL),)
  ifeq ($(shell printf '\043include <dnnl.h>\nint main(void){return dnnl_version() == 0;}\n' | $(CC) -x c - -ldnnl -o /dev/null 2>/dev/null && echo y),y)
    override CFLAGS  += -DGK_HAVE_DNNL
    override LDLIBS  += -ldnnl
    FEATURES += onednn
  endif
endif
ifeq ($(NO_PCRE2),)
  ifeq ($(shell pkg-config --exists libpcre2-8 2>/dev/null && echo y),y)
    override CFLAGS  += -DGK_HAVE_PCRE2 $(shell pkg-config --cflags libpcre2-8)
    override LDLIBS  += $(shell pkg-config --libs libpcre2-8)
    FEATURES += pcre2
  endif
endif
# libmicrohttpd: the HTTP server of `gptkit serve` (without it the command says the build has none)
ifeq ($(NO_MHD),)
  ifeq ($(shell pkg-config --exists libmicrohttpd 2>/dev/null && echo y),y)
    override CFLAGS  += -DGK_HAVE_MHD $(shell pkg-config --cflags libmicrohttpd)
    override LDLIBS  += $(shell pkg-config --libs libmicrohttpd)
    FEATURES += microhttpd
  endif
endif
ifeq ($(NO_GMP),)
  # GMP: exact big-number arithmetic for the `calc` tool (without it calc answers that it is unavailable)
  ifeq ($(shell printf '\043include <gmp.h>\nint main(void){mpz_t a; mpz_init(a); mpz_clear(a); return 0;}\n' | $(CC) -x c - -lgmp -o /dev/null 2>/dev/null && echo y),y)
    override CFLAGS  += -DGK_HAVE_GMP
    override LDLIBS  += -lgmp
    FEATURES += gmp
  endif
endif
# Open MPI: data-parallel training under mpirun (src/dist; without it the dist layer is a one-rank stand-in).
# The flags come from pkg-config's ompi-c (Debian libopenmpi-dev), so the build keeps $(CC) rather than mpicc.
ifeq ($(NO_MPI),)
  ifeq ($(shell pkg-config --exists ompi-c 2>/dev/null && echo y),y)
    override CFLAGS  += -DGK_HAVE_MPI $(shell pkg-config --cflags ompi-c)
    override LDLIBS  += $(shell pkg-config --libs ompi-c)
    FEATURES += openmpi
  endif
endif
# CUDA: the cuda backend (src/kern/cuda/*.cu, docs/cuda.md) when nvcc is found (on PATH, else /usr/local/cuda),
# built as a plugin, $(BUILD)/libgptkit-cuda.so (linked against cudart and cuBLASLt), that src/kern/cuda/loader.c
# opens on the first use of `--device cuda`: linking cuBLASLt into gptkit itself cost every command ~200 MB of
# resident memory and ~80 ms at start. The plugin calls back gk_errf, gk_fatal_at and gk_calloc, which the programs
# export (test_cuda loads the plugin, so a fourth callback would show there).
# Without nvcc, loader.c makes `--device cuda` refuse with a reason.
# Code for sm_90 (H100/H200) plus compute_90 PTX for newer GPUs: one architecture keeps nvcc's time modest on the
# 2-core CI. CUDA_ARCH overrides (e.g. CUDA_ARCH="-gencode arch=compute_80,code=sm_80" for an A100).
# Sanitizer builds (make asan, fuzzers) leave it out: ASan and the CUDA runtime do not mix, and they test the CPU.
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
CU_SRC :=
ifeq ($(NO_CUDA)$(SAN),)
  ifneq ($(NVCC),)
    CUDA_HOME := $(patsubst %/bin/nvcc,%,$(NVCC))
    CU_SRC := $(wildcard src/kern/cuda/*.cu)
    override CFLAGS  += -DGK_HAVE_CUDA
    override LDLIBS  += -ldl -Wl,--export-dynamic-symbol=gk_errf -Wl,--export-dynamic-symbol=gk_fatal_at \
                        -Wl,--export-dynamic-symbol=gk_calloc
    CUDA_PLUGIN := $(BUILD)/libgptkit-cuda.so
    FEATURES += cuda
    # NCCL: GPU collectives for data parallelism on the cuda backend (src/kern/cuda/nccl.cu, driven by src/dist),
    # compiled into the plugin when nccl.h and libnccl.so are found beside the toolkit or in the system's paths.
    # Opt out with NO_NCCL=1. Only the plugin links libnccl; gptkit asks the plugin at run time.
    ifeq ($(NO_NCCL),)
      NCCL_INC := $(firstword $(foreach d,$(CUDA_HOME)/include /usr/local/include /usr/include,$(wildcard $(d)/nccl.h)))
      NCCL_LIB := $(firstword $(foreach d,$(CUDA_HOME)/lib64 /usr/local/lib /usr/lib/x86_64-linux-gnu /usr/lib64,$(wildcard $(d)/libnccl.so)))
      ifneq ($(NCCL_INC),)
        ifneq ($(NCCL_LIB),)
          NCCL_FLAGS := -DGK_HAVE_NCCL -I$(dir $(NCCL_INC))
          NCCL_LINK := -L$(dir $(NCCL_LIB)) -Xlinker -rpath,$(dir $(NCCL_LIB)) -lnccl
          FEATURES += nccl
        endif
      endif
    endif
  endif
endif
NVCCFLAGS ?= -O2 -g
override NVCCFLAGS += -std=c++17 $(CUDA_ARCH) -Isrc -DGK_HAVE_CUDA $(NCCL_FLAGS) -MMD -MP -Xcompiler -fPIC,-Wall,-Wextra,-Wno-unused-parameter
ifneq ($(WERROR),)
  override NVCCFLAGS += -Werror all-warnings -Xcompiler -Werror
endif
# cJSON is required (JSON/JSONL reading and writing).
CJSON_CFLAGS := $(shell pkg-config --cflags libcjson 2>/dev/null)
CJSON_LIBS   := $(shell pkg-config --libs libcjson 2>/dev/null || echo -lcjson)
override CFLAGS += $(CJSON_CFLAGS)
override LDLIBS += $(CJSON_LIBS)
# zlib is required (the built-in demo corpus is stored gzip-compressed).
override LDLIBS += -lz
# SQLite 3 with FTS5 is required (the retrieval index, src/index: Debian libsqlite3-dev).
override CFLAGS += $(shell pkg-config --cflags sqlite3 2>/dev/null)
override LDLIBS += $(shell pkg-config --libs sqlite3 2>/dev/null || echo -lsqlite3)

LIB_SRC  := $(filter-out src/cli/%,$(wildcard src/*/*.c src/*/*/*.c))
CLI_SRC  := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CU_OBJ   := $(CU_SRC:%.cu=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
# The serve web page is compiled in: src/serve/page.html becomes a C byte array (rule below).
LIB_OBJ  += $(BUILD)/gen/serve_page.o

.PHONY: all test bench asan clean summary print-ldlibs
all: $(BUILD)/gptkit $(TEST_BIN) $(CUDA_PLUGIN) summary

# The libraries a program linked against $(BUILD)/libgptkit.a needs (bench/llama and bench/constrain read them).
print-ldlibs:
	@echo $(LDLIBS)

summary:
	@echo "gptkit build: cc=$(CC) features=[$(strip $(FEATURES))] (opt-outs: NO_OPENMP=1 NO_BLAS=1 NO_DNNL=1 NO_PCRE2=1 NO_MHD=1 NO_GMP=1 NO_MPI=1 NO_CUDA=1 NO_NCCL=1)"

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/libgptkit-cuda.so: $(CU_OBJ)
	$(NVCC) -shared $(CUDA_ARCH) -o $@ $^ -L$(CUDA_HOME)/lib64 -Xlinker -rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcudart $(NCCL_LINK)

$(BUILD)/libgptkit.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/gptkit: $(CLI_OBJ) $(BUILD)/libgptkit.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/tests/testlib.o $(BUILD)/libgptkit.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

# src/serve/page.html as a C byte array (od + sed; no xxd needed)
$(BUILD)/gen/serve_page.c: src/serve/page.html
	@mkdir -p $(dir $@)
	{ echo '/* generated from src/serve/page.html by the Makefile */'; echo '#include <stddef.h>'; \
	  echo 'const unsigned char serve_page_html[] = {'; od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '0x00 };'; echo 'const size_t serve_page_html_len = sizeof serve_page_html - 1;'; } > $@.tmp && mv $@.tmp $@
$(BUILD)/gen/serve_page.o: $(BUILD)/gen/serve_page.c
	$(CC) $(CFLAGS) -c $< -o $@

# The CUDA kernels' logic under a CPU emulation of CUDA's execution model (tests/cuda_emu; docs/cuda.md): the .cu
# files of src/kern/cuda compiled as C++ with -DKCU_EMULATE. Needs only a C++ compiler (no nvcc, no GPU); skipped
# (not built) without one.
CXX ?= g++
ifeq ($(shell echo 'int main(){return 0;}' | $(CXX) -x c++ - -o /dev/null 2>/dev/null && echo y),y)
EMU_SRC := src/kern/cuda/ops.cu src/kern/cuda/attn.cu src/kern/cuda/matmul.cu tests/cuda_emu/emu.cc tests/cuda_emu/test_cuda_emu.cc
all: $(BUILD)/tests/test_cuda_emu
$(BUILD)/tests/test_cuda_emu: $(EMU_SRC) tests/cuda_emu/emu.h src/kern/cuda/cuda_impl.h src/kern/cuda/cuda.h src/kern/kern.h \
                              $(BUILD)/tests/testlib.o $(BUILD)/libgptkit.a
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas $(if $(WERROR),-Werror) $(SAN) \
	  -fno-math-errno -fno-trapping-math $(filter -fopenmp,$(CFLAGS)) -DKCU_EMULATE -Isrc -Itests -Itests/cuda_emu $(CJSON_CFLAGS) \
	  -x c++ $(EMU_SRC) -x none $(BUILD)/tests/testlib.o $(BUILD)/libgptkit.a -o $@ $(LDFLAGS) $(LDLIBS)
endif

test: all
	@bash tests/run.sh $(BUILD)

# UBSan findings abort (-fno-sanitize-recover) instead of printing and going on; tests/run.sh also sends every
# sanitizer report to a log directory and counts each as a FAIL, so a report inside a CLI script (whose stderr
# the script may swallow, or whose exit status it may expect to be non-zero) is never lost.
asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer" test

bench: all
	@bash bench/run.sh

clean:
	rm -rf $(BUILD) build-asan

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- fuzzers (clang + libFuzzer): `make fuzz` builds build-fuzz/fuzz/fuzz_* from tests/fuzz/fuzz_*.c over an
# ASan/UBSan build of the library; tests/cli/fuzz.sh runs each for a bounded time over tests/fuzz/corpus/.
FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
.PHONY: fuzz fuzz-bins
fuzz:
	$(MAKE) CC=clang BUILD=build-fuzz OPT=-O1 NO_OPENMP=1 \
	  SAN="-fsanitize=address,undefined,fuzzer-no-link -fno-omit-frame-pointer -fno-sanitize-recover=undefined" fuzz-bins
fuzz-bins: $(FUZZ_BIN)
# the command-line parsers (the pipeline config) live in src/cli: the harnesses link its objects but main's
$(BUILD)/libgptkit-cli.a: $(filter-out $(BUILD)/src/cli/main.o,$(CLI_OBJ))
	@rm -f $@
	ar rcs $@ $^
$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libgptkit-cli.a $(BUILD)/libgptkit.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/fuzz -fsanitize=fuzzer $< $(BUILD)/libgptkit-cli.a $(BUILD)/libgptkit.a -o $@ $(LDFLAGS) $(LDLIBS)

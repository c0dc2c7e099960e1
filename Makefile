# Quick start: `make run` (generate with a model) and `make test` (whole suite). Plain `make` builds Release.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
MODEL ?=
DEFAULT_MODEL := tests/data/golden/zaya1-text/trained-small

# Hostile input (docs/limits.md): the ASan+UBSan build of the whole suite, and the libFuzzer targets of fuzz/.
SANITIZE_BUILD ?= build-sanitize
SAN_CC ?= clang-14
SAN_CXX ?= clang++-14
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= safetensors config tokenizer jinja openai npy sidecar

.PHONY: all build setup test test-fast run clean bench sanitize-build test-sanitize fuzz fuzz-smoke

all: build

setup:
	@./scripts/setup.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# The whole suite, then the same suite under ASan + UBSan, then each fuzz target briefly on its corpus.
test: test-fast test-sanitize fuzz-smoke

test-fast: setup build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

sanitize-build: setup
	@CC=$(SAN_CC) CXX=$(SAN_CXX) cmake -S . -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=Release -DZAYA_SANITIZE=ON \
	  -DZAYA_FUZZ=ON -DZAYA_BUILD_BENCH=OFF >/dev/null
	@cmake --build $(SANITIZE_BUILD) -j $(JOBS)

test-sanitize: sanitize-build
	@cd $(SANITIZE_BUILD) && ctest --output-on-failure -j $(JOBS)

# make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS="jinja openai"]: each target for FUZZ_SECONDS; new inputs are kept in
# $(SANITIZE_BUILD)/fuzz-corpus, crashes in $(SANITIZE_BUILD)/fuzz-artifacts.
fuzz: sanitize-build
	@./scripts/fuzz.sh $(SANITIZE_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: sanitize-build
	@./scripts/fuzz.sh $(SANITIZE_BUILD) 10 $(FUZZ_TARGETS)

run: setup build
ifeq ($(MODEL),)
	@echo "== No MODEL=dir given: using the small model shipped for tests ($(DEFAULT_MODEL))."
	@echo "== It is a tiny model (1.1 M parameters, trained on licence texts): expect licence-flavoured English at best."
	@echo "== Greedy ids after the prompt 'The GNU General Public License is':"
	@$(BUILD)/zaya generate -q -m $(DEFAULT_MODEL) --ids 2,374,89,81,80,182,382,196,80,182,13,8,43,76,93,98,92,20,68,77 -n 32 --temp 0 --print-ids
	@echo "== The same as text, streamed:"
	@$(BUILD)/zaya run -m $(DEFAULT_MODEL) --raw -p "The GNU General Public License is" -n 48 --temp 0
else
	@$(BUILD)/zaya generate -m $(MODEL) --ids 2 -n 32 --temp 0 --print-ids
	@$(BUILD)/zaya run -m $(MODEL) -p "Hello! Who are you?" -n 128
endif

bench: build
	@$(BUILD)/zaya_bench

clean:
	rm -rf $(BUILD)

# Quick start: `make run` (generate with a model) and `make test` (whole suite). Plain `make` builds Release.
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
MODEL ?=
DEFAULT_MODEL := tests/data/golden/zaya1-text/trained-small

.PHONY: all build setup test run clean bench

all: build

setup:
	@./scripts/setup.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: setup build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

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

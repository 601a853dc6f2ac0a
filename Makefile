# The two commands: `make run` (whole stack locally) and `make test`. `make bench` prints figures.
BUILD ?= build
JOBS  ?= $(shell nproc)
SB_WERROR ?= 0
CMAKE_FLAGS ?=

.PHONY: all deps build run test bench clean fmt

all: build

deps:
	@scripts/install-deps

build: deps
	@cmake -S . -B $(BUILD) -DSB_WERROR=$(if $(filter 1,$(SB_WERROR)),ON,OFF) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/bin/switchboard up --config config/local.yaml

test: build
	cd $(BUILD) && ctest --output-on-failure -j 2

bench: build
	bench/run-all

clean:
	rm -rf $(BUILD)

fmt:
	git ls-files '*.c' '*.h' | xargs clang-format -i

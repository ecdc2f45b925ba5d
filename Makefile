# engram: the two commands are `make run` and `make test` (see README.md).
#
#   make build       release build: build/engram, build/echo-server, build/eio-echo, bench tools
#   make run         install what is missing, build, serve on http://localhost:3000
#   make test        install what is missing, build, run every test (release, then ASan+UBSan),
#                    then a short libFuzzer run of every fuzz target
#   make test-asan   only the sanitizer build and its run of the whole suite
#   make fuzz        run every fuzz target for FUZZ_SECS seconds (default 600)
#   make bench       the benchmarks in bench/ (see bench/README.md)
#   make soak        10,000 clients for 10 minutes, RSS and p99 (scripts/soak.sh, SECURITY.md)
#   make valgrind    every C unit test under valgrind memcheck (scripts/valgrind.sh)
#   make fuzz-campaign  each fuzz target for RUNS executions or MINUTES (scripts/fuzz-campaign.sh)
#   make format      clang-format every C source
JOBS ?= $(shell nproc)
CTEST_JOBS ?= 2
FUZZ_SECS ?= 600
FUZZ_SMOKE_SECS ?= 10
CMAKE ?= cmake
BUILD_TYPE ?= RelWithDebInfo

.PHONY: all deps deps-build build build-asan build-fuzz run test test-release test-asan \
	fuzz fuzz-smoke bench format clean soak valgrind fuzz-campaign

all: build

deps:
	@scripts/deps.sh all

deps-build:
	@scripts/deps.sh build

build/Makefile: CMakeLists.txt
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps-build build/Makefile
	$(CMAKE) --build build -j $(JOBS)

build-asan/Makefile: CMakeLists.txt
	CC=clang CXX=clang++ $(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DENGRAM_SANITIZE=ON

build-asan: deps-build build-asan/Makefile
	$(CMAKE) --build build-asan -j $(JOBS)

build-fuzz/Makefile: CMakeLists.txt
	CC=clang CXX=clang++ $(CMAKE) -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DENGRAM_FUZZ=ON -DENGRAM_TESTS=OFF

build-fuzz: deps-build build-fuzz/Makefile
	$(CMAKE) --build build-fuzz -j $(JOBS)

run: build
	./build/engram serve

test: deps
	$(MAKE) build
	$(MAKE) test-release
	$(MAKE) test-asan
	$(MAKE) fuzz-smoke

test-release: build
	cd build && ctest --output-on-failure -j $(CTEST_JOBS)

test-asan: build-asan
	cd build-asan && ctest --output-on-failure -j $(CTEST_JOBS)

fuzz-smoke: build-fuzz
	scripts/fuzz.sh $(FUZZ_SMOKE_SECS)

fuzz: build-fuzz
	scripts/fuzz.sh $(FUZZ_SECS)

bench: deps build
	bench/run.sh

soak: build
	scripts/soak.sh

valgrind: build
	scripts/valgrind.sh

fuzz-campaign: build-fuzz
	scripts/fuzz-campaign.sh

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cc')

clean:
	rm -rf build build-asan build-fuzz

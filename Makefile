# The interface for people and CI (.ci/run calls the same targets).
# `make` or `make help` lists them.
SHELL       := bash
.SHELLFLAGS := -eu -o pipefail -c

GO           ?= go
FUZZTIME     ?= 30s
TEST_TIMEOUT ?= 20m
TEST_LOG     ?= artifacts/go-test.log
BENCHTIME    ?= 300ms
BENCHCOUNT   ?= 5
LOADTEST     ?=

# The PostgreSQL half of the suite runs against this database; when it is
# unreachable those tests skip with SKIP-POSTGRES (and fail under CI=true).
export IDP_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable

# The race detector needs cgo, that is a C compiler (Debian: apt-get install gcc).
RACE = $(if $(filter 1,$(shell $(GO) env CGO_ENABLED)),-race)

.DEFAULT_GOAL := help
.PHONY: help build run test generate check-generated lint fuzz bench bench-smoke clean clean-data

help: ## list the targets
	@echo "usage: make <target> [GO=go] [FUZZTIME=30s] [TEST_TIMEOUT=20m]"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{ printf "  %-16s %s\n", $$1, $$2 }'

build: ## build bin/idp and bin/demo-viewer
	$(GO) build -o bin/idp ./cmd/idp
	$(GO) build -o bin/demo-viewer ./cmd/demo-viewer

# The viewer runs in the background and is stopped when the provider exits
# (Ctrl-C reaches both; the trap also covers a failed start).
run: build ## run the provider (SQLite in ./data) and the demo viewer; Ctrl-C stops both
	@./bin/idp demo-setup
	@echo "Starting the provider and the demo viewer; Ctrl-C stops both."
	@./bin/demo-viewer & viewer=$$!; \
	./bin/idp serve & serve=$$!; \
	trap 'kill $$viewer $$serve 2>/dev/null || true; wait' EXIT; \
	wait $$serve

# go test -v goes to $(TEST_LOG) in full; the terminal gets it without the
# RUN/PAUSE/CONT/PASS lines, then a line saying whether PostgreSQL was tested.
test: ## go test -race ./... incl. browser tests when chromium is installed (+ check-generated, lint and bench-smoke under CI=true)
	@mkdir -p artifacts
	@if [ -z "$(RACE)" ]; then \
		echo "test: cgo is off (no C compiler?), so the race detector cannot run; install gcc" >&2; \
		if [ "$${CI:-}" = true ]; then exit 1; fi; echo "test: running WITHOUT -race" >&2; fi
	@echo "$(GO) test $(RACE) -timeout $(TEST_TIMEOUT) ./...  (full log: $(TEST_LOG))"
	@status=0; \
	$(GO) test $(RACE) -v -timeout $(TEST_TIMEOUT) ./... 2>&1 | tee $(TEST_LOG) \
		| awk '!/^ *(=== (RUN|PAUSE|CONT)|--- PASS:)|^PASS$$/ { print; fflush() }' || status=$$?; \
	url=$$(sed -E 's#(://[^:/@]*):[^@/]*@#\1:xxxxx@#' <<< "$$IDP_TEST_DATABASE_URL"); \
	skipped=$$(grep -c 'SKIP-POSTGRES' $(TEST_LOG) || true); \
	ran=$$(grep -cE -- '--- (PASS|FAIL): [^ ]*/postgres|^(ok|FAIL)[[:space:]]+[^ ]*/postgres[[:space:]]' $(TEST_LOG) || true); \
	echo; \
	if [ "$$skipped" -gt 0 ]; then \
		echo "PostgreSQL: NOT TESTED - $$skipped test(s) could not reach $$url (see SKIP-POSTGRES above)"; \
	elif [ "$$ran" -gt 0 ]; then \
		echo "PostgreSQL: tested against $$url (no test skipped it)"; \
	else \
		echo "PostgreSQL: no PostgreSQL tests ran"; \
	fi; \
	if grep -q 'SKIP-CHROMIUM' $(TEST_LOG); then \
		echo "Browser tests: NOT RUN - no Chromium (Debian: apt-get install chromium; see SKIP-CHROMIUM above)"; \
	elif grep -qE '^(ok|FAIL)[[:space:]]+[^ ]*/idp/browsertest[[:space:]]' $(TEST_LOG); then \
		echo "Browser tests: ran in $$(command -v chromium || echo "$${CHROMIUM:-chromium}"); screenshots in artifacts/screenshots/"; \
	fi; \
	exit $$status
ifeq ($(CI),true)
	@$(MAKE) --no-print-directory check-generated lint bench-smoke
endif

generate: ## regenerate the templ code in templates/ (templ pinned in go.mod)
	$(GO) tool templ generate -path templates

check-generated: generate ## fail if templates/ differs from what generate produces
	@if [ -n "$$(git status --porcelain -- templates)" ]; then \
		echo "check-generated: templates/ is not what 'make generate' produces; run it and commit:"; \
		git status --porcelain -- templates; git --no-pager diff -- templates; exit 1; \
	fi
	@echo "check-generated: templates/ is up to date"

lint: ## gofmt, go vet, staticcheck (pinned in go.mod)
	@files=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); \
	if [ -n "$$files" ]; then echo "lint: not gofmt-ed (run gofmt -w):"; echo "$$files"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@targets=$$($(GO) test -list '^Fuzz' ./... \
		| awk '/^Fuzz/ { names = names " " $$1 } /^ok / { if (names != "") print $$2 names; names = "" }'); \
	if [ -z "$$targets" ]; then echo "fuzz: no fuzz targets yet"; exit 0; fi; \
	while read -r pkg names; do \
		for name in $$names; do \
			echo "== $$pkg $$name ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done <<< "$$targets"

# Go benchmarks of the hot paths (benchstat-comparable), then the load tool
# against a provider on SQLite and on PostgreSQL (IDP_TEST_DATABASE_URL; a
# fresh schema, dropped afterwards; skipped loudly when unreachable), then
# the target table. LOADTEST passes flags to bin/idp-loadtest.
bench: ## Go benchmarks + load test (SQLite, PostgreSQL) into artifacts/bench/, with the targets
	@mkdir -p artifacts/bench
	$(GO) build -o bin/idp ./cmd/idp
	$(GO) build -o bin/idp-loadtest ./cmd/idp-loadtest
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(BENCHCOUNT) ./idp/... \
		| tee artifacts/bench/go-bench.txt | grep -E '^(Benchmark|ok|FAIL|---)' || true
	@if grep -q -E '^(FAIL|--- FAIL)' artifacts/bench/go-bench.txt; then echo "bench: a Go benchmark failed (artifacts/bench/go-bench.txt)"; exit 1; fi
	./bin/idp-loadtest -out artifacts/bench/results.txt -bench-out artifacts/bench/load.txt $(LOADTEST)
	@echo "bench: artifacts/bench/go-bench.txt and load.txt (compare runs with benchstat), results.txt (key: value)"

# Each Go benchmark once, so that one broken by a change fails CI rather
# than the next `make bench`.
bench-smoke: ## run every Go benchmark once (-benchtime 1x)
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

clean: ## remove bin/ and artifacts/ (keeps ./data)
	rm -rf bin artifacts

clean-data: ## remove ./data: the embedded database, master key and demo client of `make run`
	rm -rf data

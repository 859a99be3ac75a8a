# The interface for people and CI. `make help` lists the targets.
GO       ?= go
FUZZTIME ?= 30s
export IDP_TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable

.DEFAULT_GOAL := help
.PHONY: help build run test generate check-generated lint fuzz bench clean clean-data

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

build: ## build bin/idp and bin/demo-viewer
	$(GO) build -o bin/idp ./cmd/idp
	$(GO) build -o bin/demo-viewer ./cmd/demo-viewer

run: build ## run the provider (embedded store in ./data) and the demo viewer
	@./bin/idp demo-setup
	@./bin/demo-viewer & viewer=$$!; \
	trap 'kill $$viewer 2>/dev/null' EXIT INT TERM; \
	./bin/idp serve

test: ## run the whole suite (race detector; PostgreSQL from IDP_TEST_DATABASE_URL)
	@echo "PostgreSQL tests use IDP_TEST_DATABASE_URL=$(IDP_TEST_DATABASE_URL) (skipped with SKIP-POSTGRES if unreachable, failing under CI=true)"
	$(GO) test -race -timeout 30m ./...
ifeq ($(CI),true)
	$(MAKE) check-generated lint
endif

generate: ## regenerate templ code (pinned in go.mod)
	$(GO) tool templ generate -path templates

check-generated: generate ## fail if generated code is not up to date
	@if [ -n "$$(git status --porcelain -- templates)" ]; then \
		echo "generated code is out of date; run 'make generate' and commit:"; \
		git --no-pager diff -- templates; git status --porcelain -- templates; exit 1; fi

lint: ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

fuzz: ## run every fuzz target for FUZZTIME (default 30s)
	@set -e; found=0; \
	for pkg in $$($(GO) list ./...); do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			found=1; echo "== $$pkg $$t ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done; \
	if [ $$found = 0 ]; then echo "no fuzz targets"; fi

bench: ## run the Go benchmarks into artifacts/bench.txt
	@mkdir -p artifacts
	$(GO) test -run '^$$' -bench . -benchmem ./... | tee artifacts/bench.txt

clean: ## remove build and test outputs (not ./data)
	rm -rf bin artifacts

clean-data: ## remove ./data: the embedded database and master key of `make run`
	rm -rf data

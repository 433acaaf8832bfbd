# Quick start: `make demo` runs the main job on the built-in demo data; `make test` runs the tests.
# Both create the virtual environment (.venv) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

WORKDIR ?= workdir
UI_PORT ?= 4200
TB_PORT ?= 6006

.PHONY: demo test test-extended lint format bench clean ui serve tensorboard

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/inception-retrain run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

# Full calibrations and long fault scenarios (CI runs them after `make test`).
test-extended: $(STAMP)
	$(BIN)/pytest -m extended || [ $$? -eq 5 ]  # 5: no extended test collected

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/train.py
	$(BIN)/python bench/scale.py

# The Prefect UI at http://127.0.0.1:$(UI_PORT) (a local server with its own SQLite database).
ui: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/prefect server start --host 127.0.0.1 --port $(UI_PORT)

# The scheduled deployments, served against that UI's server (start `make ui` first).
serve: $(STAMP)
	PREFECT_API_URL=http://127.0.0.1:$(UI_PORT)/api $(BIN)/inception-retrain serve

# TensorBoard over every run's training logs at http://127.0.0.1:$(TB_PORT).
tensorboard: $(STAMP)
	$(BIN)/tensorboard --logdir $(WORKDIR)/runs --host 127.0.0.1 --port $(TB_PORT)

clean:
	rm -rf $(VENV) workdir test-output .pytest_cache .ruff_cache

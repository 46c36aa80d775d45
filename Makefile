# inferplane — every target creates and reuses .venv by itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODELS := specs/models/.built

.PHONY: demo test lint format models bench schema protos clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,examples,cpu]'
	@touch $(STAMP)

# The example models, built from data bundled with scikit-learn (no downloads).
$(MODELS): $(STAMP) specs/build_models.py $(wildcard specs/data/*)
	$(BIN)/python specs/build_models.py --out specs/models
	@touch $(MODELS)

models: $(MODELS)

demo: $(MODELS)
	@echo "== infc check specs/demo.infer"
	@$(BIN)/infc check specs/demo.infer
	@echo
	@echo "== infc plan specs/demo.infer"
	@$(BIN)/infc plan specs/demo.infer
	@echo
	@echo "(the gateway that serves this plan is not built yet: this demo only compiles)"

test: $(MODELS)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(MODELS)
	$(BIN)/python bench/compiler_bench.py
	$(BIN)/python bench/runtime_bench.py

# Regenerates the published JSON Schema of the routing plan.
schema: $(STAMP)
	$(BIN)/python -m inferplane.compiler.plan_schema > docs/plan.schema.json

# Regenerates the Python stubs of protos/*.proto (committed; a test checks drift).
protos: $(STAMP)
	$(BIN)/python protos/generate.py

clean:
	rm -rf $(VENV) specs/models .pytest_cache .ruff_cache .hypothesis

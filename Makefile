# inferplane — every target creates and reuses .venv by itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
MODELS := specs/models/.built
# Where `make demo` serves; SO_REUSEADDR as gRPC sets it, so TIME_WAIT does not count.
DEMO_ADDR ?= 127.0.0.1:8001
export FREE_PORT := import socket, sys; host, port = sys.argv[1].rsplit(":", 1); \
  s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
  s.bind((host, int(port)))

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
	@if ! $(BIN)/python -c 'import inferplane.gateway.app, inferplane.gateway.server' 2>/dev/null; then \
	  echo "(the gateway is not built in this checkout: this demo only compiles)"; exit 0; fi; \
	if ! $(BIN)/python -c "$$FREE_PORT" $(DEMO_ADDR) 2>/dev/null; then \
	  echo "make demo: $(DEMO_ADDR) is in use; stop what holds it, or run" \
	    "make demo DEMO_ADDR=127.0.0.1:PORT" >&2; exit 1; fi; \
	out=$$(mktemp); log=$$(mktemp); \
	echo "== infc serve specs/demo.infer --listen $(DEMO_ADDR) --location onprem:localhost   (its log: $$log)"; \
	$(BIN)/infc serve specs/demo.infer --listen $(DEMO_ADDR) --location onprem:localhost >$$out 2>$$log & pid=$$!; \
	trap 'kill -TERM $$pid 2>/dev/null; wait $$pid 2>/dev/null; rm -f $$out' EXIT INT TERM; \
	for i in $$(seq 600); do \
	  grep -q '^serving' $$out && break; kill -0 $$pid 2>/dev/null || break; sleep 0.2; done; \
	if ! grep -q '^serving' $$out; then \
	  echo "make demo: infc serve did not start; the end of its log:" >&2; tail -20 $$log >&2; \
	  exit 1; fi; \
	cat $$out; echo; \
	$(BIN)/python specs/demo_client.py $(DEMO_ADDR); status=$$?; \
	echo; echo "== SIGTERM: the gateway drains, stops its workers and exits"; \
	kill -TERM $$pid; wait $$pid; echo "infc serve exited with $$?"; \
	trap - EXIT INT TERM; rm -f $$out; exit $$status

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
	$(BIN)/python bench/redaction_bench.py
	$(BIN)/python bench/gateway_bench.py

# Regenerates the published JSON Schema of the routing plan.
schema: $(STAMP)
	$(BIN)/python -m inferplane.compiler.plan_schema > docs/plan.schema.json

# Regenerates the Python stubs of protos/*.proto (committed; a test checks drift).
protos: $(STAMP)
	$(BIN)/python protos/generate.py

clean:
	rm -rf $(VENV) specs/models .pytest_cache .ruff_cache .hypothesis

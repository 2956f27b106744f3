# Two commands matter: `make demo` (the main job, on the bundled model) and `make test`.
# Each creates the virtual environment it needs on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test fast lint lab bench browser gallery clean

$(VENV)/.created:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	touch $@

# one stamp per set of extras, remade when pyproject.toml changes
$(VENV)/.installed-%: pyproject.toml $(VENV)/.created
	$(BIN)/pip install --quiet -e '.[$*]'
	touch $@

# the test extra, and legrad-torch (the LeGrad authors' package, that tests/test_transformer_methods.py compares
# against) without its dependencies: it pins open_clip <= 2.23, and its code runs on the open_clip decomviz uses
$(VENV)/.installed-test: pyproject.toml $(VENV)/.created
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps legrad-torch==1.1
	touch $@

# without a GPU, torch's CPU wheels first (scripts/install_torch.sh; falls back to the default wheels, saying so)
$(VENV)/.torch: $(VENV)/.created
	bash scripts/install_torch.sh $(BIN)/pip
	touch $@

$(VENV)/.installed-notebook: $(VENV)/.torch

demo: $(VENV)/.installed-notebook
	HF_HUB_OFFLINE=1 $(BIN)/decomviz demo --out demo_report.html

lab: $(VENV)/.installed-notebook
	HF_HUB_OFFLINE=1 $(BIN)/jupyter lab notebooks/ --ip=127.0.0.1

browser:
	bash scripts/ensure_chromium.sh

# everything; the browser tests skip, saying why, where Chromium is missing (`make browser` or .ci/run installs it)
test: $(VENV)/.installed-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# the inner loop (at most 5 minutes on 2 cores): the lint, then everything but the browser, notebook and slow tests
fast: $(VENV)/.installed-test
	$(BIN)/ruff check .
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow" --ignore=tests/test_browser.py --ignore=tests/test_notebooks.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

bench: $(VENV)/.installed-test
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/bench_engine.py

# the notebooks executed on the bundled model, as HTML pages with their outputs (docs/gallery/)
gallery: $(VENV)/.installed-dev
	HF_HUB_OFFLINE=1 $(BIN)/python -m decomviz.apps.gallery --out docs/gallery

clean:
	rm -rf $(VENV) build *.egg-info

# Everything runs from a project venv that `make` creates on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test check lint typecheck fuzz bench corpus corpus-docker clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## demo: compile and run the bundled iris example locally with kfp.local (no cluster needed)
demo: $(BIN)/.installed
	$(BIN)/nb2kfp lint examples/iris_diamond.ipynb
	$(BIN)/nb2kfp graph examples/iris_diamond.ipynb
	$(BIN)/nb2kfp compile examples/iris_diamond.ipynb -o .nb2kfp/iris_diamond.pipeline.yaml
	$(BIN)/nb2kfp run examples/iris_diamond.ipynb --local

## test: static checks, then the whole test suite
test: check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: lint typecheck

## fuzz: the property tests with many more generated notebooks (bounded to 15 minutes)
fuzz: $(BIN)/.installed
	HYPOTHESIS_PROFILE=fuzz timeout 900 $(BIN)/python -m pytest tests/test_fuzz.py tests/test_yaml_text.py -p no:cacheprovider -q

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests $(wildcard bench)
	$(BIN)/ruff format --check src tests $(wildcard bench)

typecheck: $(BIN)/.installed
	$(BIN)/mypy

## bench: nb2kfp against Kale 2.3.0 (the bench installs it in its own venv) on the same notebooks; BENCH_ARGS=--quick
bench: $(BIN)/.installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)

## corpus: every notebook of tests/corpus/ tagged 3 ways, run with nb2kfp and papermill, values compared;
## exit 1 when one the baseline passes regresses. CORPUS_ARGS="--only control --variants chain --work DIR"
corpus: $(BIN)/.installed
	$(BIN)/python tests/corpus_harness.py --check $(CORPUS_ARGS)

## corpus-docker: CORPUS_DOCKER notebooks (files and modules beside some of them) tagged by headings, run with
## `nb2kfp run --local` and with `--docker` (each step in the notebook's step image, built offline on
## NB2KFP_TEST_BASE_IMAGE: source /tmp/nb2kfp-services/env or .ci/services.sh), both compared with papermill.
CORPUS_DOCKER ?= control/kincar-fusion,control/cds112-L8_fusion-kincar,control/cds112-L7_kalman-pvtol,$\
	control/pvtol-outputfbk,control/repr_gallery,control/cruise,lmfit/discuss_model_eval_uncertainty,$\
	corner/quickstart,emcee/quickstart,formulaic/quickstart,formulaic/splines,hist/HistDemo,hist/Stack,$\
	iminuit/basic,iminuit/template_fits
corpus-docker: $(BIN)/.installed
	$(BIN)/python tests/corpus_harness.py --docker --variants headings --only "$(CORPUS_DOCKER)" $(CORPUS_ARGS)

clean:
	rm -rf $(VENV) .nb2kfp .pytest_cache .mypy_cache .ruff_cache

# Two commands on a fresh machine:  `make study`  and  `make test`.
# Both create .venv (python3 -m venv) when it is missing and (re)install the package with pip
# only when pyproject.toml is newer than the stamp file .venv/.installed.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# make study [PROFILE=default|smoke|paper] [STUDY="06_taylor_pruning 01_loss_visualization"]
#            [DEVICE=auto|cpu|cuda] [SET="seeds=[0] epochs=2"]   (SET items: no spaces inside)
#            [JOBS=2]  (studies at once, the cores shared between them; JOBS=1: one at a time)
PROFILE ?= default
STUDY ?=
DEVICE ?=
SET ?=
JOBS ?= 2
# make sweep SWEEP=params/sweeps/taylor_seeds_smoke.yaml [EXECUTOR=dask] [WORKERS=2]
SWEEP ?=
EXECUTOR ?= local
WORKERS ?= 2
METRIC ?=

RUN_ARGS := --profile $(PROFILE) $(foreach s,$(STUDY),--study $(s)) \
	$(if $(DEVICE),--device $(DEVICE)) $(foreach s,$(SET),--set '$(s)') --jobs $(JOBS)

.PHONY: setup study dry-run test test-slow lab notebooks smoke-reference bench report sweep sweep-report clean-cache

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	# torchattacks 3.5.1 pins requests~=2.25, which conflicts with jupyterlab's requests>=2.31
	# (its code runs fine on newer requests), so it is installed without its dependency pins.
	$(PY) -m pip install --no-deps torchattacks==3.5.1
	touch $(STAMP)

setup: $(STAMP)

study: $(STAMP)
	$(PY) -m studylib run $(RUN_ARGS)

# What `make study` with the same variables would run: merged parameters and where each
# value comes from, output folders, cached models, last runtimes. Runs nothing.
dry-run: $(STAMP)
	$(PY) -m studylib run $(RUN_ARGS) --dry-run

# Unit tests, then nbval on the committed notebooks (skipped when there are none yet), then the
# smoke regression check on the results.json files that nbval's execution wrote (each notebook
# runs at its smoke defaults there, into outputs/smoke/<study>/): one execution of the six
# notebooks serves both checks. `pytest tests/` alone runs the same regression check through
# the runner instead (marker smoke_run), which make test deselects.
# Progress bars are off so re-executed cells print what the committed notebooks show.
test: $(STAMP)
	MPLBACKEND=agg STUDYLIB_PROGRESS=0 $(PY) -m pytest tests/ -m "not slow and not smoke_run"
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
		mkdir -p outputs && touch outputs/.nbval-started; \
		MPLBACKEND=agg STUDYLIB_PROGRESS=0 $(PY) -m pytest --nbval notebooks/ \
			--nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider; \
		rc=$$?; if [ $$rc -eq 5 ]; then echo "nbval: no notebook cells collected"; rc=0; fi; \
		[ $$rc -ne 0 ] && exit $$rc; \
		echo "smoke regression: the results.json of nbval's runs against tests/reference/"; \
		$(PY) -m studylib.cli.regression check --smoke-runs --newer-than outputs/.nbval-started; \
	else \
		echo "nbval: no notebooks under notebooks/ yet, nothing to validate"; \
	fi

test-slow: $(STAMP)
	MPLBACKEND=agg STUDYLIB_PROGRESS=0 $(PY) -m pytest tests/ -m slow; \
		rc=$$?; if [ $$rc -eq 5 ]; then echo "no slow tests"; rc=0; fi; exit $$rc

# JupyterLab refuses to start as root unless told (containers, CI): pass --allow-root there.
lab: $(STAMP)
	$(PY) -m jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

# Re-execute every notebook at its own defaults (the smoke profile), cwd = repo root, so the
# committed outputs are current. Written to a temporary file first, then moved into place.
notebooks: $(STAMP)
	@set -e; for nb in notebooks/*.ipynb; do \
		[ -e "$$nb" ] || { echo "no notebooks under notebooks/"; break; }; \
		tmp="$$(dirname $$nb)/.$$(basename $$nb .ipynb).executing.ipynb"; \
		echo "executing $$nb"; \
		MPLBACKEND=agg STUDYLIB_PROGRESS=0 $(PY) -m papermill "$$nb" "$$tmp" -k python3 \
			--cwd "$(CURDIR)" || { rm -f "$$tmp"; exit 1; }; \
		mv "$$tmp" "$$nb"; \
	done

# Rebuild tests/reference/<study>.smoke.json, the tolerances of tests/test_smoke_regression.py:
# every study at the smoke profile under four conditions (torch's default threads and one
# thread, with and without oneDNN capped at AVX2, as other CPUs run other kernels), each from
# an empty model cache. Value = the first condition's; tolerance from the spread (see
# studylib/cli/regression.py). About 7 minutes on 2 cores; STUDY="..." rebuilds those studies only
# (give each concurrent rebuild its own REF_RUNS folder). Run it only when a change of the code
# is meant to move the smoke numbers, and say so in the commit.
REF_RUNS ?= outputs/reference-runs
REF_CONDITIONS := default threads1 avx2 avx2-threads1
smoke-reference: $(STAMP)
	@set -e; rm -rf $(REF_RUNS); for cond in $(REF_CONDITIONS); do \
		case $$cond in \
			default) envs="";; threads1) envs="STUDYLIB_THREADS=1";; \
			avx2) envs="ONEDNN_MAX_CPU_ISA=AVX2";; \
			avx2-threads1) envs="ONEDNN_MAX_CPU_ISA=AVX2 STUDYLIB_THREADS=1";; esac; \
		echo "smoke runs under $$cond ($${envs:-no settings})"; \
		env $$envs STUDYLIB_CACHE=$(REF_RUNS)/$$cond/cache MPLBACKEND=agg STUDYLIB_PROGRESS=0 \
			$(PY) -m studylib run --profile smoke --output-root $(REF_RUNS)/$$cond \
			$(foreach s,$(STUDY),--study $(s)); \
	done
	$(PY) -m studylib.cli.regression write --runs $(REF_RUNS) --conditions $(REF_CONDITIONS) \
		$(foreach s,$(STUDY),--study $(s))

# Benchmarks (added by another issue): runs `python -m benchmarks` when the package exists.
bench: $(STAMP)
	@if [ -e benchmarks/__init__.py ] || [ -e benchmarks/__main__.py ] || [ -e benchmarks.py ]; then \
		$(PY) -m benchmarks --readme README.md; \
	else \
		echo "no benchmarks yet (benchmarks/ is added by a later issue)"; \
	fi

report: $(STAMP)
	$(PY) -m studylib report --profile $(PROFILE)

sweep: $(STAMP)
	@[ -n "$(SWEEP)" ] || { echo "usage: make sweep SWEEP=params/sweeps/<name>.yaml [EXECUTOR=dask] [WORKERS=2]"; exit 2; }
	$(PY) -m studylib sweep --file $(SWEEP) --executor $(EXECUTOR) --workers $(WORKERS)

sweep-report: $(STAMP)
	@[ -n "$(SWEEP)" ] || { echo "usage: make sweep-report SWEEP=params/sweeps/<name>.yaml [METRIC=name]"; exit 2; }
	$(PY) -m studylib sweep-report --file $(SWEEP) $(if $(METRIC),--metric $(METRIC))

clean-cache:
	rm -rf outputs/cache

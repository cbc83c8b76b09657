# A fresh machine needs only python3 (3.11) and this Makefile: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SAMPLES := tests/fixtures/samples

.PHONY: install run test lint train release clean worker-footprint bench system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch==2.13.0 (CPU) is pinned in pyproject.toml, so monai does not pull a CUDA build.
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)  ## Wrap the bundled samples as DICOM, then score them through the queue (embedded Redis + workers).
	$(BIN)/skin-plugin info
	rm -rf out/sample-inbox && $(BIN)/skin-plugin to-dicom $(SAMPLES) --out out/sample-inbox
	$(BIN)/skin-plugin score out/sample-inbox --out out/sample-run

SYSTEM_TOOLS := dsrdump dciodvfy storescu chromium promtool docker-compose systemd-analyze Orthanc
SYSTEM_PACKAGES := dcmtk dicom3tools chromium fonts-dejavu-core prometheus docker-compose systemd orthanc orthanc-dicomweb orthanc-python

system-deps:  ## Debian tools the tests use (DCMTK, dicom3tools, Chromium, promtool, Orthanc, ...); installed only if missing.
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages for:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	fi

test: $(STAMP) system-deps  ## Lint and run the whole test suite.
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

train: $(STAMP)  ## The shipped recipe twice: on train (validation picks the rule), then refit on train+val.
	$(BIN)/skin-plugin train --out runs/lesioncnn-val --max-minutes 240
	$(BIN)/skin-plugin train --out runs/lesioncnn --fit-on train+val --select-on last --max-minutes 240 --no-package

release: $(STAMP)  ## Package the refit as the shipped release, with the train-only run's decision rule.
	$(BIN)/skin-plugin package --run runs/lesioncnn --out skin_plugin/release --calibration-from runs/lesioncnn-val

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache

WORKER_VENV := .venv-worker
worker-footprint:  ## Install size and per-process memory of the torch-free serving install.
	rm -rf $(WORKER_VENV) && $(PYTHON) -m venv $(WORKER_VENV)
	$(WORKER_VENV)/bin/python -m pip install --quiet .
	cd /tmp && $(CURDIR)/$(WORKER_VENV)/bin/python $(CURDIR)/benchmarks/worker_footprint.py $(CURDIR)/$(SAMPLES)

bench: $(STAMP)  ## Inference speed table (JSON in bench.json).
	$(BIN)/skin-plugin bench --json bench.json

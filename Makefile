# A fresh machine needs only python3 (3.11) and this Makefile: `make run`, `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SAMPLES := tests/fixtures/samples

.PHONY: install run test lint train release clean worker-footprint bench bench-urgent system-deps

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

SYSTEM_TOOLS := dsrdump dciodvfy storescu chromium promtool docker-compose systemd-analyze Orthanc curl jq openssl
SYSTEM_PACKAGES := dcmtk dicom3tools chromium fonts-dejavu-core prometheus docker-compose systemd orthanc orthanc-dicomweb orthanc-python curl jq openssl

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

EXTRA := ../shared/data/extra_derm

release: $(STAMP)  ## Package the refit with the train-only run's rule, export the IR, score PH2 (external check).
	$(BIN)/skin-plugin package --run runs/lesioncnn --out skin_plugin/release --calibration-from runs/lesioncnn-val
	$(BIN)/skin-plugin export
	$(BIN)/skin-plugin evaluate --metadata $(EXTRA)/metadata.csv --images $(EXTRA)/images --source PH2 \
		--json skin_plugin/release/metrics_ph2.json
	$(BIN)/skin-plugin package --out skin_plugin/release --card-only

# The 2.0.0 candidate (not shipped: it failed the release gate, see README "The model"): the ImageNet-pretrained
# ProxylessNAS student on the HAM10000 training split; 41 min on one thread of a shared 2-core machine, resumable.
STUDENT_RECIPE := --network proxyless-w0.3-r176 --pretrained --aspect-jitter 0.35 \
	--lr 1.5e-3 --warmup-epochs 1 --epochs 16 --threads 1

train-student: $(STAMP)  ## Train the pretrained-student candidate (runs/student), resumable.
	$(BIN)/skin-plugin train --out runs/student $(STUDENT_RECIPE) --max-minutes 240 --resume --no-package

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache

WORKER_VENV := .venv-worker
worker-footprint:  ## Install size and per-process memory of the torch-free serving install.
	rm -rf $(WORKER_VENV) && $(PYTHON) -m venv $(WORKER_VENV)
	$(WORKER_VENV)/bin/python -m pip install --quiet .
	cd /tmp && $(CURDIR)/$(WORKER_VENV)/bin/python $(CURDIR)/benchmarks/worker_footprint.py $(CURDIR)/$(SAMPLES)

bench: $(STAMP)  ## Inference speed table (JSON in bench.json).
	$(BIN)/skin-plugin bench --json bench.json

bench-urgent: $(STAMP)  ## Urgent-path latency, last C-STORE to SRs in a real Orthanc (needs make system-deps).
	$(BIN)/python -m benchmarks.urgent_latency --json benchmarks/results/urgent_latency.json

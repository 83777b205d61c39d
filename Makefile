# Thin targets: the work is done by uv, the CLIs of the tools, and scripts under scripts/.
# `make demo` and `make test` are the two commands of the README.

PYTHON ?= python3
# uv: `make UV=...`, else the uv on PATH, else the one `make uv` installs in ~/.local/bin
# (scripts/bootstrap_uv.py: stdlib only, for a system Python under PEP 668 with no pip).
# Under `uv run` (the tests), UV is already the path of uv itself.
ifeq ($(origin UV),undefined)
UV := $(shell command -v uv 2>/dev/null || echo "$${UV_INSTALL_DIR:-$$HOME/.local/bin}/uv")
endif
RUN := $(UV) run --frozen
# Packages are compiled to bytecode when installed: where PYTHONDONTWRITEBYTECODE is set (some
# shells and container images set it), nothing else writes .pyc files and every process would
# compile Prefect again (`import flows.btc`: 3.9 s instead of 1.6 s, measured). Not for `uv run`:
# it would re-check 17k files (+0.6 s) on every call.
SYNC := $(UV) sync --frozen --compile-bytecode
DAGSTER_PORT ?= 3000
# mypy's cache outside the checkout, like uv's: a new clone re-checks only what changed (mypy
# compares file hashes): 1.1-1.4 s instead of 21 s for a cold check of the four packages.
MYPY := $(RUN) mypy --cache-dir $(HOME)/.cache/btc-orchestration/mypy

.PHONY: help uv setup demo plain server up down status worker test soak test-unit lint format parity parity-live dagster airflow-ui airflow-ui-down comparison screenshots image hybrid stack-up stack-down bench clean \
	ha-up ha-down ha-status migrate metrics alert-rules backup restore test-ops bench-ops capacity

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

uv:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) scripts/bootstrap_uv.py >/dev/null

setup: uv  ## install uv (if missing) and the locked main environment with every group
	$(SYNC) --all-groups

demo: uv  ## the main job: Prefect server + process worker, btc-hourly on replay data, UI URL
	@$(SYNC) --inexact --quiet
	@$(RUN) python -m deployments.stack demo

plain: setup  ## the same pipeline with no orchestrator: btc run, then export
	$(RUN) btc run
	$(RUN) btc export --out var/daily_avg.json
	$(RUN) btc chart --out var/daily_avg_90d.png

server: setup  ## prefect server on 127.0.0.1:4200 (next free port if busy), PREFECT_HOME=var/prefect
	$(RUN) python -m deployments.stack server

up: setup  ## server + setup (pools, blocks, limits, automations) + deploy + process worker
	$(RUN) python -m deployments.stack up

down:  ## stop workers (SIGINT twice) then the server, by PID
	@$(RUN) python -m deployments.stack down

status:
	$(RUN) python -m deployments.stack status

worker: uv  ## another process worker on its own environment var/worker-venv (PREFECT_API_URL must point at the server)
	workers/start-process-worker.sh btc-process

# Two xdist workers for two cores: the suite is CPU-bound (Prefect servers and flow-run processes).
# A third worker, to fill the waits of the end-to-end tests, measured 867-947 s for the parallel
# suite against 879-962 s with two (images built each time): no gain beyond the machine's noise.
test: setup  ## every test suite: core, Prefect, Dagster, parity, then Airflow in its own environment
	$(SYNC) --project airflow_port
	$(RUN) ruff check .
	$(MYPY)
	$(RUN) pytest -n 2 --dist loadgroup -m 'not soak and not alone'
	$(RUN) pytest -m alone tests/hostile
	$(MAKE) -C airflow_port test

soak: setup  ## 200 sequential deployment runs on a PostgreSQL-backed server, the worker's memory bounded (~10 min)
	$(RUN) pytest -m soak tests/prefect/test_soak.py

test-unit: setup  ## the fast unit tests only
	$(RUN) pytest tests/unit

lint: setup  ## ruff lint and format check, mypy on every package but bench and tests (pyproject.toml)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(MYPY)

format: setup
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

parity: setup  ## plain, Prefect, Dagster, Airflow on INPUT=file.csv (default: the replay slice), byte for byte
	$(SYNC) --project airflow_port
	$(RUN) python -m scripts.parity $(INPUT)

DAGSTER_HOME ?= $(CURDIR)/var/dagster
parity-live: setup  ## plain, Prefect, Dagster, Airflow against the fake API's faults: same requests, failover and bytes
	$(SYNC) --project airflow_port
	$(RUN) python -m scripts.parity_live

# SIGTERM to make reaches every dagster process: exec hands it to uv (a shell in between died
# alone and left dagster running), uv to scripts.process_group, which signals the whole group.
dagster: setup  ## Dagster UI on http://127.0.0.1:$(DAGSTER_PORT) (asset graph btc_price -> daily_avg)
	mkdir -p $(DAGSTER_HOME)
	[ -f $(DAGSTER_HOME)/dagster.yaml ] || cp dagster_port/dagster.yaml $(DAGSTER_HOME)/dagster.yaml
	@echo "asset graph: http://127.0.0.1:$(DAGSTER_PORT)/locations/dagster_port.definitions/asset-groups/btc/lineage"
	DAGSTER_HOME=$(DAGSTER_HOME) exec $(RUN) python -m scripts.process_group \
		dagster dev -m dagster_port.definitions -h 127.0.0.1 -p $(DAGSTER_PORT)

airflow-ui:  ## Airflow api-server (127.0.0.1:8080), scheduler, dag-processor; airflow-ui-down stops them
	$(MAKE) -C airflow_port ui

airflow-ui-down:
	$(MAKE) -C airflow_port ui-down

screenshots: setup  ## the browser test (headless Chromium: infra/provision-browser.sh); it rewrites docs/img/*.png
	$(SYNC) --project airflow_port
	$(RUN) pytest tests/e2e/test_browser.py

image: setup  ## the flow runtime image btc-flow:<version>-<git sha> (debootstrap base as root, else python:3.11-slim)
	$(RUN) python -m infra.image build

hybrid: setup  ## server + process and Docker workers here, one btc-hourly-docker run in a container (Docker: infra/provision.sh)
	$(RUN) python -m deployments.hybrid demo

stack-up: setup  ## the production stack of infra/docker-compose.yml, every image built here; waits until healthy
	$(RUN) python -m infra.compose up

stack-down:  ## `down -v` of that stack: no container, network or volume left (the DuckDB volume btc-data too)
	$(RUN) python -m infra.compose down

comparison: setup  ## measure Prefect, Dagster, Airflow (~7 min; PostgreSQL on 127.0.0.1:5432) and regenerate docs/COMPARISON.md
	$(SYNC) --project airflow_port
	$(RUN) python -m scripts.comparison

bench: setup  ## benchmarks, each printing a ratio against a baseline measured in the same run
	$(RUN) python -m bench.ingest
	$(RUN) python -m bench.ducklake_ingest
	$(RUN) python -m bench.prefect_cost
	$(RUN) python -m bench.worker_env
	$(RUN) python -m bench.docker_latency
	$(RUN) python -m bench.dagster_overhead
	$(RUN) python -m bench.dask_backfill
	$(RUN) python -m bench.dask_backfill --latency-ms 500 --first 2023-01-01 --last 2023-12-31 --workers 4
	$(SYNC) --project airflow_port
	airflow_port/.venv/bin/python -m bench.airflow_overhead

ha-up: setup  ## HA control plane: HAProxy :4700 -> two API replicas, services, exporter, Prometheus (docs/operations.md)
	$(RUN) python -m deployments.ha up

ha-status:  ## its processes, and each replica as HAProxy sees it
	$(RUN) python -m deployments.ha status

ha-down:  ## stop the HA control plane (supervisord stops its programs)
	$(RUN) python -m deployments.ha down

migrate: setup  ## database migrations as their own step: prefect server database upgrade -y
	$(RUN) python -m deployments.ha migrate

metrics: setup  ## the pipeline's health for Prometheus on :4704 (PREFECT_API_URL, BTC_DB_PATH)
	$(RUN) python -m deployments.metrics

alert-rules:  ## promtool: the Prometheus config, the alert rules and their unit tests
	cd infra/prometheus && promtool check config prometheus.yml && promtool test rules btc-alerts.test.yml

backup:  ## back up the Prefect database and the DuckDB store into var/backups/<UTC time>/
	$(RUN) python -m deployments.backup create

restore:  ## restore BACKUP=var/backups/<UTC time> into an empty database and an absent DuckDB file
	@test -n "$(BACKUP)" || { echo "usage: make restore BACKUP=var/backups/<UTC time>"; exit 2; }
	$(RUN) python -m deployments.backup restore $(BACKUP)

test-ops: setup  ## the operations tests: HA, metrics and alerts, backup and restore, upgrade (tests/ops)
	$(RUN) pytest tests/ops

bench-ops: setup  ## runs per minute with one and two API replicas; DB growth per 1,000 runs without and with retention
	$(RUN) python -m bench.ha_throughput
	$(RUN) python -m bench.retention_growth

capacity: setup  ## runs/min against offered load per setup, its CPU limit and bottleneck; regenerates docs/capacity.md (<= 15 min)
	$(RUN) python -m bench.capacity

clean:  ## remove generated data (var/, out/)
	rm -rf var out

# Thin targets: the work is done by uv, the CLIs of the tools, and scripts under scripts/.
# `make demo` and `make test` are the two commands of the README.

PYTHON ?= python3
UV := $(PYTHON) -m uv
RUN := $(UV) run --frozen

.PHONY: help setup demo plain server up down status worker test test-unit lint format parity dagster airflow-ui airflow-ui-down comparison screenshots image hybrid bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## install uv (if missing) and the locked main environment
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen

demo: setup  ## the main job: Prefect server + process worker, btc-hourly on replay data, UI URL
	$(RUN) python -m deployments.stack demo

plain: setup  ## the same pipeline with no orchestrator: btc run, then export
	$(RUN) btc run
	$(RUN) btc export --out var/daily_avg.json
	$(RUN) btc chart --out var/daily_avg_90d.png

server: setup  ## prefect server on 127.0.0.1:4200 (next free port if busy), PREFECT_HOME=var/prefect
	$(RUN) python -m deployments.stack server

up: setup  ## server + setup (pools, blocks, limits, automations) + deploy --all + process worker
	$(RUN) python -m deployments.stack up

down:  ## stop workers (SIGINT twice) then the server, by PID
	$(RUN) python -m deployments.stack down

status:
	$(RUN) python -m deployments.stack status

worker: setup  ## another process worker (PREFECT_API_URL must point at the server)
	workers/start-process-worker.sh btc-process

test: setup  ## every test suite: core, Prefect, Dagster, parity, then Airflow in its own environment
	$(UV) sync --frozen --project airflow_port
	$(RUN) ruff check .
	$(RUN) pytest
	$(MAKE) -C airflow_port test

test-unit: setup  ## the fast unit tests only
	$(RUN) pytest tests/unit

lint: setup  ## ruff lint and format check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: setup
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

parity: setup  ## plain, Prefect, Dagster, Airflow on INPUT=file.csv (default: the replay slice), byte for byte
	$(UV) sync --frozen --project airflow_port
	$(RUN) python -m scripts.parity $(INPUT)

dagster: setup  ## Dagster UI on http://127.0.0.1:3000 (asset graph btc_price -> daily_avg)
	mkdir -p var/dagster
	DAGSTER_HOME=$(CURDIR)/var/dagster $(RUN) dagster dev -m dagster_port.definitions -h 127.0.0.1 -p 3000

airflow-ui:  ## Airflow api-server (127.0.0.1:8080), scheduler, dag-processor; airflow-ui-down stops them
	$(MAKE) -C airflow_port ui

airflow-ui-down:
	$(MAKE) -C airflow_port ui-down

screenshots: setup  ## the browser test (headless Chromium: infra/provision-browser.sh); it rewrites docs/img/*.png
	$(UV) sync --frozen --project airflow_port
	$(RUN) pytest tests/e2e/test_browser.py

image: setup  ## the flow runtime image btc-flow:<version>-<git sha> (debootstrap base as root, else python:3.11-slim)
	$(RUN) python -m infra.image build

hybrid: setup  ## server + process and Docker workers here, one btc-hourly-docker run in a container (Docker: infra/provision.sh)
	$(RUN) python -m infra.hybrid demo

comparison: setup  ## measure Prefect, Dagster, Airflow (~7 min; PostgreSQL on 127.0.0.1:5432) and regenerate docs/COMPARISON.md
	$(UV) sync --frozen --project airflow_port
	$(RUN) python -m scripts.comparison

bench: setup  ## benchmarks, each printing a ratio against a baseline measured in the same run
	$(RUN) python -m bench.ingest
	$(RUN) python -m bench.ducklake_ingest
	$(RUN) python -m bench.prefect_latency
	$(RUN) python -m bench.docker_latency
	$(RUN) python -m bench.dagster_overhead
	$(RUN) python -m bench.dask_backfill
	$(RUN) python -m bench.dask_backfill --latency-ms 500 --first 2023-01-01 --last 2023-12-31 --workers 4
	$(UV) sync --frozen --project airflow_port
	airflow_port/.venv/bin/python -m bench.airflow_overhead

clean:  ## remove generated data (var/, out/)
	rm -rf var out

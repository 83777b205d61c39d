"""The simplest way to schedule the flow: serve it from this process (no work pool, no worker).

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve

This is the `flow.serve(name="btc-hourly", cron="0 * * * *")` path of Prefect's quickstart: the
process polls the server for its own scheduled runs and runs them itself until you press Ctrl-C.
Use it to try things; use `prefect deploy` + workers (prefect.yaml) for anything that must
survive a reboot.
"""

from flows.btc import btc_pipeline

if __name__ == "__main__":
    btc_pipeline.serve(name="btc-hourly", cron="0 * * * *")

"""Shared fixtures live in btc_core.testing, so the Airflow environment's suite can use them too."""

pytest_plugins = ["btc_core.testing"]

"""btc_core: the framework-free BTC price pipeline shared by the CLI, Prefect, Dagster and Airflow."""

__version__ = "0.1.0"

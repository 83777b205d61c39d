"""Tooling around the Airflow DAG in ``dags/btc.py``: the project-local environment and parity."""

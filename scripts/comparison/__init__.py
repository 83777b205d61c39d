"""Measure Prefect, Dagster and Airflow on this pipeline and write docs/COMPARISON.md.

    uv run python -m scripts.comparison                    # measure (about 7 minutes), write the page
    uv run python -m scripts.comparison --quick            # fewer repeats: a smoke run
    uv run python -m scripts.comparison --from-json FILE   # write the page from saved measurements

``measure`` takes every number (its parts: ``loc``, ``installs``, ``runs``, ``project``) and saves
them to ``var/comparison/measurements.json``; ``page`` turns them into named values and renders
``page.md.j2`` with them.
"""

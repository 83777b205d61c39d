"""The one DuckDB helper the core shares: the single row an aggregate query returns."""

from __future__ import annotations

from typing import Any

import duckdb


def one_row(con: duckdb.DuckDBPyConnection, query: str, params: object = None) -> tuple[Any, ...]:
    """The row of an aggregate ``query`` (``SELECT count(*) ...``), which always has one.

    DuckDB types ``fetchone()`` as optional; this says once why it is not here."""
    found = con.execute(query, params).fetchone()
    if found is None:
        raise RuntimeError(f"an aggregate query returned no row: {query.split(None, 6)[:6]}")
    return found

"""The DuckDB helpers the core shares: values written into SQL, and the single row of an aggregate.

The core writes its few values into the SQL text as literals (:func:`bound`) instead of binding
them as Python parameters: DuckDB's Python binding (1.4.4) compares every bound value with
``pandas.NaT`` first, which imports pandas (0.4 s, more than the plain CLI's other imports
together) into a process that has no other use for it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import duckdb

# A quoted string or identifier (left alone: a file name or a payload may hold a "$"), or a
# parameter.
_TOKEN = re.compile(r"""'[^']*(?:''[^']*)*'|"[^"]*(?:""[^"]*)*"|\$([A-Za-z_][A-Za-z_0-9]*)""")


def literal(value: object) -> str:
    """``value`` (None, bool, int, float, str, date, datetime, or a list or tuple of them) as a
    DuckDB SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):  # through text, as the binding does: every double round-trips
        return f"CAST('{value!r}' AS DOUBLE)"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, datetime):
        kind = "TIMESTAMP" if value.tzinfo is None else "TIMESTAMPTZ"
        return f"{kind} '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    raise TypeError(f"no SQL literal for {type(value).__name__}")


def bound(query: str, params: Mapping[str, object] | None = None) -> str:
    """``query`` with each ``$name`` outside quotes replaced by the literal of ``params[name]``."""
    if not params:
        return query
    return _TOKEN.sub(lambda m: literal(params[m[1]]) if m[1] else m[0], query)


def execute(
    con: duckdb.DuckDBPyConnection, query: str, params: Mapping[str, object] | None = None
) -> duckdb.DuckDBPyConnection:
    """Run ``query`` with ``params`` written in (:func:`bound`)."""
    return con.execute(bound(query, params))


def texts_sql(values: Sequence[str | None]) -> str:
    """SQL for a list of texts (and NULLs), in order, to ``unnest``: one JSON string for DuckDB
    to parse, however long the list (a literal per value parses far slower)."""
    return f"""from_json({literal(json.dumps(values))}, '["VARCHAR"]')"""


def one_row(
    con: duckdb.DuckDBPyConnection, query: str, params: Mapping[str, object] | None = None
) -> tuple[Any, ...]:
    """The row of an aggregate ``query`` (``SELECT count(*) ...``), which always has one.

    DuckDB types ``fetchone()`` as optional; this says once why it is not here."""
    found = execute(con, query, params).fetchone()
    if found is None:
        raise RuntimeError(f"an aggregate query returned no row: {query.split(None, 6)[:6]}")
    return found

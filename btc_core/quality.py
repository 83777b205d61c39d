"""Data-quality rules on the store, in SQL: each returns how many rows break it and a few examples.

Orchestrators show them their own way (Dagster asset checks, Prefect artifacts); the rules live
here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from btc_core.sql import one_row
from btc_core.store import PriceStore

MAX_PER_DAY = 24
MAX_EXAMPLES = 5

RULES = {
    "non_positive_prices": """
        SELECT count(*), list(strftime(ts, '%Y-%m-%d %H:%M') ORDER BY ts)[1:$n]
        FROM observations WHERE NOT (price_usd > 0)""",
    "repeated_hours": """
        SELECT count(*), list(strftime(hour, '%Y-%m-%d %H:00') ORDER BY hour)[1:$n]
        FROM (SELECT date_trunc('hour', ts) AS hour FROM observations GROUP BY 1 HAVING count(*) > 1)""",
    "days_over_24": f"""
        SELECT count(*), list(day::VARCHAR || ': ' || n ORDER BY day)[1:$n]
        FROM (SELECT CAST(ts AS DATE) AS day, count(*) AS n FROM observations GROUP BY 1
              HAVING count(*) > {MAX_PER_DAY})""",
}


@dataclass(frozen=True)
class RuleResult:
    """How many rows (or hours, or days) break a rule, with up to five examples."""

    rule: str
    violations: int
    examples: list[str]

    @property
    def passed(self) -> bool:
        return self.violations == 0


def check(store: PriceStore, rule: str) -> RuleResult:
    """Evaluate one rule of :data:`RULES` against the store."""
    with store.connect() as con:
        count, examples = one_row(con, RULES[rule], {"n": MAX_EXAMPLES})
    return RuleResult(rule, int(count), list(examples or []))


def max_per_day(store: PriceStore) -> int:
    """The largest number of observations in one UTC day (0 when empty)."""
    with store.connect() as con:
        (n,) = one_row(
            con,
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM observations GROUP BY CAST(ts AS DATE))",
        )
    return int(n)

"""Lines of code per port, by one counting rule for every port."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

from btc_core.settings import PROJECT_ROOT

PORTS = ("Prefect", "Dagster", "Airflow")

# The files that exist only for that orchestrator and define or deploy the pipeline with it
# (Python, YAML, TOML), tests and docs excluded.
PORT_FILES = {
    "Prefect": ["flows/*.py", "deployments/*.py", "deployments/*.toml", "prefect.yaml"],
    "Dagster": ["dagster_port/*.py"],
    "Airflow": ["airflow_port/dags/*.py", "airflow_port/btc_airflow/*.py"],
}
# Shell scripts, units and Docker files that start services: listed apart, not counted above.
AROUND_FILES = {
    "Prefect": ["workers/*", "infra/*"],
    "Dagster": [],
    "Airflow": ["airflow_port/scripts/*", "airflow_port/Makefile"],
}
TEST_FILES = {
    "Prefect": ["tests/prefect/*.py"],
    "Dagster": ["tests/dagster/*.py"],
    "Airflow": ["airflow_port/tests/*.py"],
}
CORE_FILES = ["btc_core/*.py"]


def files(patterns: list[str]) -> list[Path]:
    """The files matching ``patterns`` under the project, sorted, bytecode excluded."""
    found: set[Path] = set()
    for pattern in patterns:
        found.update(path for path in PROJECT_ROOT.glob(pattern) if path.is_file())
    return sorted(
        path for path in found if "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def docstring_lines(tree: ast.Module) -> set[int]:
    """Line numbers of the module's, classes' and functions' docstrings."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def python_code_lines(text: str) -> set[int]:
    """Line numbers holding Python code: no blank lines, comments or docstrings."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    skip |= {tokenize.ENDMARKER, tokenize.ENCODING}
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in skip:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines - docstring_lines(ast.parse(text))


def code_lines(path: Path) -> int:
    """The counting rule: non-blank lines that are not comments (and, in Python, not docstrings)."""
    text = path.read_text(errors="replace")
    if path.suffix == ".py":
        return len(python_code_lines(text))
    return sum(1 for line in text.splitlines() if line.strip() and line.strip()[0] not in "#;")


def count(patterns: list[str]) -> dict[str, int]:
    """Code lines per file (path relative to the project)."""
    return {str(path.relative_to(PROJECT_ROOT)): code_lines(path) for path in files(patterns)}


def lines_of_code() -> dict[str, dict]:
    """Per port: its own files, the service scripts around it and its tests; and the core."""
    return {
        "ports": {name: count(PORT_FILES[name]) for name in PORTS},
        "around": {name: count(AROUND_FILES[name]) for name in PORTS},
        "tests": {name: count(TEST_FILES[name]) for name in PORTS},
        "core": count(CORE_FILES),
    }

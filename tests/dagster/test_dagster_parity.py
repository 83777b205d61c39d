"""Parity: the Dagster path writes the same export bytes as the plain path."""

from collections.abc import Callable
from pathlib import Path

import pytest

from btc_core.settings import Settings
from dagster_port import parity


def test_the_replay_slice_gives_the_plain_path_bytes(
    settings: Settings, tmp_path: Path, plain_export: Callable[[Settings], str]
) -> None:
    out = tmp_path / "out" / "dagster.json"

    text = parity.run(settings.replay_file, tmp_path / "dagster.duckdb", out)

    assert out.read_bytes() == text.encode() == plain_export(settings).encode()


def test_the_full_recording_gives_the_plain_path_bytes(
    settings: Settings,
    shared_csv: Path,
    tmp_path: Path,
    plain_export: Callable[[Settings], str],
) -> None:
    text = parity.run(shared_csv, tmp_path / "dagster.duckdb", tmp_path / "dagster.json")

    assert text == plain_export(settings.replace(replay_file=shared_csv))
    assert text.count('"day"') > 1500


def test_parity_refuses_a_used_database(settings: Settings, tmp_path: Path) -> None:
    used = tmp_path / "used.duckdb"
    used.touch()

    with pytest.raises(FileExistsError, match="fresh DuckDB"):
        parity.run(settings.replay_file, used, tmp_path / "out.json")


def test_the_command_line_writes_the_export(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dagster.json"

    parity.main([str(settings.replay_file), str(tmp_path / "dagster.duckdb"), str(out)])

    assert out.read_text().startswith("[\n  {\n")
    assert f"wrote {out}" in capsys.readouterr().out

"""btc_core.files: the one writer (a unique temporary name, renamed over the target) and the
appender of the notification file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from btc_core.errors import ConfigError
from btc_core.files import append, replacing, umask, write_atomically


def test_a_new_file_is_written_whole_with_no_temporary_file_left(tmp_path):
    write_atomically(tmp_path / "sub" / "out.json", b"[]\n")
    assert (tmp_path / "sub" / "out.json").read_bytes() == b"[]\n"
    assert os.listdir(tmp_path / "sub") == ["out.json"]
    assert stat.S_IMODE((tmp_path / "sub" / "out.json").stat().st_mode) == 0o666 & ~umask()


def test_an_existing_file_keeps_its_permissions(tmp_path):
    out = tmp_path / "out.json"
    out.write_bytes(b"old")
    out.chmod(0o600)
    write_atomically(out, b"new")
    assert out.read_bytes() == b"new" and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_a_failure_inside_the_block_leaves_the_target_and_no_temporary_file(tmp_path):
    out = tmp_path / "out.json"
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(out) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert out.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.json"]


def test_two_writers_never_share_a_temporary_name(tmp_path):
    out = tmp_path / "out.json"
    with replacing(out) as first, replacing(out) as second:
        assert first != second and first.parent == second.parent == tmp_path


@pytest.mark.parametrize("kind", ["FIFO", "folder"])
def test_a_target_that_is_not_a_regular_file_is_refused_and_nothing_is_made(tmp_path, kind):
    out = tmp_path / "out"
    os.mkfifo(out) if kind == "FIFO" else out.mkdir()
    with pytest.raises(ConfigError, match=f"cannot write {out}: it is a {kind}, not a regular"):
        write_atomically(out, b"x")
    assert os.listdir(tmp_path) == ["out"]


def test_append_refuses_a_symlink_and_leaves_its_target_alone(tmp_path):
    (tmp_path / "victim").write_text("v\n")
    (tmp_path / "log").symlink_to(tmp_path / "victim")
    with pytest.raises(OSError, match="it is a symlink"):
        append(tmp_path / "log", "line\n")
    assert (tmp_path / "victim").read_text() == "v\n"


def test_append_makes_the_file_and_adds_lines(tmp_path: Path):
    append(tmp_path / "new" / "log", "one\n")
    append(tmp_path / "new" / "log", "two\n")
    assert (tmp_path / "new" / "log").read_text() == "one\ntwo\n"

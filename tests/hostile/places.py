"""Places a database or an output cannot go: under a file, under /proc, in an immutable folder,
on a full disk."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def _while(do: list[str], undo: list[str], cannot: str) -> Iterator[None]:
    """``do`` (skipping the test with ``cannot`` and its error when it fails), then the block,
    then ``undo`` whatever happened in it."""
    done = subprocess.run(do, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"{cannot} ({done.stderr.strip()})")
    try:
        yield
    finally:
        subprocess.run(undo, check=True)


@contextmanager
def immutable(folder: Path) -> Iterator[Path]:
    """``chattr +i`` on ``folder`` (not even root may create, delete or rename in it), undone
    after the block."""
    with _while(
        ["chattr", "+i", str(folder)],
        ["chattr", "-i", str(folder)],
        "chattr +i is not possible here; needs root on ext4",
    ):
        yield folder


@contextmanager
def full_disk(folder: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (made), unmounted after the block."""
    folder.mkdir(exist_ok=True)
    with _while(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        ["umount", "--lazy", str(folder)],
        "cannot mount a tmpfs here; needs root",
    ):
        yield folder


def bad_places(tmp: Path) -> dict[str, Path]:
    """Name -> a path whose folder cannot be made or written (the immutable one is ``tmp/ro``,
    to be locked with :func:`immutable`)."""
    (tmp / "a-file").write_text("not a folder\n")
    (tmp / "ro").mkdir(exist_ok=True)
    return {
        "parent is a file": tmp / "a-file" / "x",
        "under /proc": Path("/proc/btc-hostile/x"),
        "immutable folder": tmp / "ro" / "x",
    }


def tree(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (folders as ``<dir>``)."""
    return {
        str(p.relative_to(folder)): "<dir>"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
    }

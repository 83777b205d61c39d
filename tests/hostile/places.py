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
def immutable(folder: Path) -> Iterator[Path]:
    """``chattr +i`` on ``folder`` (not even root may create, delete or rename in it), undone
    after the block."""
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not possible here ({done.stderr.strip()}); needs root on ext4")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@contextmanager
def full_disk(folder: Path, size: str = "2m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``folder`` (made), unmounted after the block."""
    folder.mkdir(exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


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

"""The one way the project writes a file (export, chart, markers, backups, restores) or appends
to one (the notification file).

A new file is made beside the target under a unique name (``tempfile.mkstemp``: created with
``O_EXCL``, so a symlink planted there is never followed), filled, then renamed over the target:
readers see the old file or the new one, never half of one. A target that is not a regular file
(a FIFO, a device, a folder, a socket) is refused with one line before anything is created, so
nothing is ever made beside ``/dev/full``.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from btc_core.errors import ConfigError

KINDS = {
    stat.S_IFDIR: "folder",
    stat.S_IFIFO: "FIFO",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
    stat.S_IFSOCK: "socket",
    stat.S_IFLNK: "symlink",
}


def special_kind(path: Path, follow: bool = True) -> str | None:
    """What ``path`` is when it exists and is not a regular file ("FIFO", "folder", ...; a
    symlink is judged by what it points to, or is one itself with ``follow=False``), else None.
    Never opens it (a FIFO would block)."""
    try:
        mode = path.stat().st_mode if follow else path.lstat().st_mode
    except (OSError, ValueError):  # absent, dangling, unreachable: the writer will say why
        return None
    return None if stat.S_ISREG(mode) else KINDS.get(stat.S_IFMT(mode), "special file")


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` would, for every thread)."""
    with suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


@contextmanager
def replacing(out: Path, mode: int = 0o666) -> Iterator[Path]:
    """A new empty file (its path) in ``out``'s folder that replaces ``out`` when the block ends
    without an error, and is removed otherwise. A new file gets ``mode`` less the umask (as
    ``open`` would), an existing target keeps its permissions.
    :class:`ConfigError` with one line if ``out`` is not a regular file or cannot be written."""
    kind = special_kind(out)
    if kind:
        raise ConfigError(f"cannot write {out}: it is a {kind}, not a regular file")
    mode &= ~umask()
    with suppress(OSError):
        mode = stat.S_IMODE(out.stat().st_mode)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    tmp = Path(name)
    try:
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        yield tmp
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomically(out: Path, data: bytes) -> None:
    """Write ``data`` to ``out`` through :func:`replacing`."""
    with replacing(out) as tmp:
        tmp.write_bytes(data)


def append(path: Path, text: str) -> None:
    """Append ``text`` to the regular file ``path`` (made if absent). Never through a symlink
    (``O_NOFOLLOW``) nor into a FIFO or a device (refused first; ``O_NONBLOCK`` fails a FIFO
    swapped in meanwhile instead of waiting for a reader). :class:`OSError` if it cannot."""
    if kind := special_kind(path, follow=False):
        raise OSError(errno.EINVAL, f"it is a {kind}, not a regular file")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    with open(os.open(path, flags, 0o644), "a", encoding="utf-8") as fh:
        fh.write(text)

"""Files that hold secrets or wrapped keys: read only when their permissions are safe, written
whole (a temporary file renamed over the old one) with owner-only permissions."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from authmodels.errors import KeyFileError

__all__ = ["file_lock", "read_private_file", "read_store_file", "write_private_file"]


def _open(path: Path, what: str, fix: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} does not exist: {fix}") from None
    except OSError as exc:
        raise KeyFileError(f"{what} {path} cannot be read: {exc.strerror}") from None


def _read(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_private_file(path: Path, *, what: str, fix: str) -> bytes:
    """The bytes of a file that holds a secret (a key-encryption key, a PIN).

    The file is checked once opened (so that it cannot be swapped between check and read): it
    must be a regular file owned by the user the process runs as, with no permission for its
    group or others (``chmod 600``).

    Args:
        path: the file.
        what: its name in messages ("the key file").
        fix: what to do when it does not exist.

    Raises:
        KeyFileError: it does not exist, cannot be read, or its owner or mode is unsafe.
    """
    fd = _open(path, what, fix)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{what} {path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise KeyFileError(
                f"{what} {path} is owned by uid {info.st_uid}, not by the user this process runs "
                f"as (uid {os.geteuid()}): `chown {os.geteuid()} {path}`, or run as its owner"
            )
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"{what} {path} can be read or written by its group or others (mode "
                f"{mode:04o}): `chmod 600 {path}`, and replace the key if others may have read it"
            )
        return _read(fd)
    finally:
        os.close(fd)


def read_store_file(path: Path, *, what: str, fix: str) -> bytes:
    """The bytes of a file that holds no secret but must not be altered by others (the
    wrapped-key store): readable by anyone, writable by its owner only.

    Raises:
        KeyFileError: it does not exist, cannot be read, or its group or others may write it.
    """
    fd = _open(path, what, fix)
    try:
        info = os.fstat(fd)
        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{what} {path} is not a regular file")
        if mode & 0o022:
            raise KeyFileError(
                f"{what} {path} can be written by its group or others (mode {mode:04o}): "
                f"`chmod go-w {path}`"
            )
        return _read(fd)
    finally:
        os.close(fd)


def write_private_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` at once: a reader sees the old file or the new one.

    The new file is written beside it with ``mode``, flushed to disk, then renamed over it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` + ``.lock`` (one key-management command at a time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

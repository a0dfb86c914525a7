"""Private files done right: 0600 files in 0700 folders, atomic replace, advisory locks."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import AsyncIterator, Iterator

from ..errors import DiskFull, InsecurePermissions, StorageError

# A write that fails with one of these is a state of the disk, not a bug: one line, no traceback.
FULL = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is exceeded",
        errno.EROFS: "the file system is read-only"}


def disk_full(path: Path, exc: OSError, kept: str) -> DiskFull | None:
    """``DiskFull`` naming ``path`` and what was kept, for ENOSPC/EDQUOT/EROFS; else None."""
    why = FULL.get(exc.errno)
    if why is None:
        return None
    return DiskFull(f"cannot write {path}: {why}; {kept}",
                    hint="free some space (or make it writable) and run the command again")


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) as 0700; tighten it if we own it and it is looser."""
    try:
        # mkdir(parents=True) makes the parents with the umask's mode (0755): make each
        # missing folder ourselves, 0700, so claude_tokens.d/ is as private as pending/ in it.
        missing, folder = [], path
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for folder in reversed(missing):
            folder.mkdir(mode=0o700, exist_ok=True)
        st = path.stat()
    except OSError as exc:
        raise StorageError(f"cannot create folder {path}: {exc.strerror}",
                           hint="check the path and its permissions") from None
    if st.st_mode & (stat.S_ISVTX | stat.S_IWOTH):
        raise StorageError(f"folder {path} is shared with other users and cannot hold tokens",
                           hint="point CLAUDE_TOKEN_FILE at a private folder, e.g. ~/.litellm/claude_tokens.json")
    if st.st_mode & 0o077 and st.st_uid == os.getuid():
        os.chmod(path, 0o700)


def check_private_file(path: Path, st: os.stat_result) -> None:
    if st.st_mode & 0o077:
        raise InsecurePermissions(
            f"{path} is readable by other users (mode {stat.S_IMODE(st.st_mode):04o}) and was not used",
            hint=f"fix it with: chmod 600 {path}")


def atomic_write(path: Path, data: bytes, *, private_dir: bool = True) -> None:
    """Write a temp file in the same folder, fsync, rename over, fsync the folder.

    A crash at any point leaves either the old file or the new one, never a mix. The file is
    always 0600; ``private_dir=False`` leaves the folder as it is (a backup written into the
    operator's own folder must not tighten it).
    """
    folder = path.parent
    if private_dir:
        ensure_private_dir(folder)
    tmp = folder / f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        full = disk_full(path, exc, "the file was left as it was")
        if full is not None:
            raise full from None
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sweep_temp_files(path: Path, older_than: float = 60.0) -> None:
    """Remove temp files a killed writer left behind (never the real file)."""
    import time

    cutoff = time.time() - older_than
    for leftover in path.parent.glob(f".{path.name}.tmp-*"):
        with contextlib.suppress(OSError):
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()


def _open_lock(path: Path) -> int:
    ensure_private_dir(path.parent)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        full = disk_full(path, exc, "nothing was changed")
        if full is not None:
            raise full from None
        raise


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """A short blocking exclusive lock (held for a read-modify-write, milliseconds)."""
    fd = _open_lock(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def async_file_lock(path: Path, poll: float = 0.005, max_poll: float = 0.05) -> AsyncIterator[None]:
    """An exclusive lock held across awaits (a refresh); polls so the loop never blocks."""
    fd = _open_lock(path)
    try:
        delay = poll
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_poll)
        yield
    finally:
        os.close(fd)


async def take_lock(path: Path, *, shared: bool = False, timeout: float | None = None,
                    poll: float = 0.005, max_poll: float = 0.05) -> int | None:
    """Take an advisory lock (``shared`` or exclusive) without blocking the loop; returns the fd
    holding it (close it to release), or None if ``timeout`` seconds passed first."""
    fd = _open_lock(path)
    deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
    delay = poll
    try:
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
            if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                os.close(fd)
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_poll)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise

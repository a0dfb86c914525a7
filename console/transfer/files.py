"""The files a transfer reads and writes: checked before any work, written 0600 and atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import StorageError, UsageError
from ..store.fsutil import atomic_write


def size_text(n: int) -> str:
    """``50.3 MB``: a file size for people."""
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} bytes"


def check_target(path: str | Path, force: bool) -> Path:
    """The file a backup or an export will write: refused if it is a folder, or exists without force."""
    target = Path(os.path.expanduser(str(path)))
    if target.is_dir():
        raise UsageError(f"{target} is a folder", hint="give a file name, e.g. tokens.ccbackup")
    if not target.parent.is_dir():
        raise UsageError(f"folder {target.parent} does not exist", hint=f"create it: mkdir -p {target.parent}")
    if target.exists() and not force:
        raise UsageError(f"{target} already exists and was left as it is",
                         hint="choose another name, or pass --force to replace it")
    return target


def write_private(target: Path, data: bytes) -> None:
    try:
        atomic_write(target, data, private_dir=False)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc.strerror or exc}",
                           hint="check the folder and its free space") from None


def check_source(path: str | Path) -> Path:
    """The backup file a restore will read: it must exist and be a file."""
    source = Path(os.path.expanduser(str(path)))
    if source.is_dir():
        raise UsageError(f"{path} is a folder", hint="give the path of a backup file")
    if not source.exists():
        raise UsageError(f"{path} does not exist", hint="give the path of a backup file")
    return source


def load_json(path: Path, what: str) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", hint=f"give the path of {what}") from None
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise UsageError(f"{path} is not JSON, so it is not {what}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a JSON object, so it is not {what}")
    return data

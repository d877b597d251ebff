"""Atomic file writes: data go to a temporary file beside the target, then a rename.

A crash (or an exception) mid-write leaves the previous file untouched and no temporary
file behind. Used for checkpoints, the benchmark's CSV and the CLI's outputs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["atomic_open", "atomic_save", "load_checkpoint"]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success flush, ``fsync`` and
    rename it over ``path`` (``os.replace`` is atomic on POSIX and Windows).

    ``mode`` is ``"w"`` or ``"wb"``; ``kwargs`` go to :func:`open` (``encoding``,
    ``newline``). The file gets the permissions ``open`` would give it (umask applied).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` so that a crash never leaves a partial file."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint written by :func:`atomic_save` (trusted files only)."""
    return torch.load(Path(path), map_location=map_location, weights_only=False)

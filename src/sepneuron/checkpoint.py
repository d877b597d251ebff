"""Atomic file writes and checkpoint loading that names the file in every error.

Writes go to a temporary file ``.NAME.<pid>.<random>.tmp`` beside the target, then a
rename: an exception mid-write leaves the previous file untouched and no temporary file
behind. A process killed mid-write (``SIGKILL``, power loss) cannot clean up; the next
writer or loader of the same target removes such files whose process is gone
(:func:`remove_stale_temporaries`; the process test is local, so two machines writing one
target on a shared file system could remove each other's live temporaries -- don't).
Used for checkpoints, the benchmark's CSV and the CLI's outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

__all__ = [
    "FIT_KEYS",
    "FORMAT",
    "CheckpointError",
    "CheckpointWriteError",
    "atomic_open",
    "atomic_save",
    "check_writable",
    "load_checkpoint",
    "remove_stale_temporaries",
]

_MAGIC = b"sepneuron-ckpt/2\n"  # starts a checksummed file (atomic_save(checksum=True))
FORMAT = "sepneuron-checkpoint/2"  # the "format" entry of a checkpoint written by fit
FIT_KEYS = ("model", "optimizer", "tuner", "scheduler", "conditioners", "sampler", "history")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, truncated, not a checkpoint of
    :func:`sepneuron.fit`, or of another run (other data or settings). The message
    names the file."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (the message names the path given). ``history`` holds
    the :class:`~sepneuron.History` of the run so far; the model keeps its parameters."""

    def __init__(self, message: str, history: Any = None) -> None:
        super().__init__(message)
        self.history = history


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists (another user's) or cannot tell: keep it
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete ``.NAME.<pid>.*.tmp`` files beside ``path`` left by processes that are gone;
    returns what was deleted. Files of live processes (and any other files) stay."""
    path = Path(path)
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[^.]*\.tmp")
    removed: list[Path] = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = pattern.fullmatch(p.name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success flush, ``fsync`` and
    rename it over ``path`` (``os.replace`` is atomic on POSIX and Windows).

    ``mode`` is ``"w"`` or ``"wb"``; ``kwargs`` go to :func:`open` (``encoding``,
    ``newline``). The file gets the permissions ``open`` would give it (umask applied).
    Stale temporaries of ``path`` from killed processes are removed first.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
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


def atomic_save(obj: Any, path: str | os.PathLike, *, checksum: bool = False) -> Path:
    """``torch.save(obj)`` to ``path`` so that a crash never leaves a partial file.

    With ``checksum``, the file is ``MAGIC + BLAKE2b digest (32 hex bytes) + torch.save
    bytes``, so that :func:`load_checkpoint` detects any changed or missing byte (a zip
    written by ``torch.save`` alone does not check its tensor data)."""
    with atomic_open(path, "wb") as f:
        if checksum:
            buf = io.BytesIO()
            torch.save(obj, buf)
            payload = buf.getvalue()
            f.write(_MAGIC + hashlib.blake2b(payload, digest_size=16).hexdigest().encode())
            f.write(payload)
        else:
            torch.save(obj, f)
    return Path(path)


def _open_payload(p: Path, given: Any) -> Any:
    """The file itself, or the verified payload of a checksummed file (see atomic_save)."""
    with open(p, "rb") as f:
        head = f.read(len(_MAGIC))
        if head != _MAGIC:
            return p
        digest = f.read(32).decode("ascii", "replace")
        payload = f.read()
    if hashlib.blake2b(payload, digest_size=16).hexdigest() != digest:
        raise CheckpointError(f"checkpoint {given} is corrupt or truncated (its checksum does "
                              "not match its contents)")
    return io.BytesIO(payload)


def check_writable(path: str | os.PathLike, what: str = "checkpoint") -> Path:
    """Fail now, not after training, when ``path`` cannot be written: ``ValueError``
    naming ``path`` if it is a folder, its parent is not a folder, or the parent (created
    if missing, as :func:`atomic_open` would) does not accept a new file. The test
    creates and removes a temporary file, so it holds for root and network file systems too."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{what} path {path} is a folder; give a file name")
    for parent in p.parents:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"{what} path {path} cannot be written: {parent} is a file, "
                             "not a folder")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.{os.getpid()}.", suffix=".tmp",
                                   dir=p.parent)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ValueError(f"{what} path {path} cannot be written: {reason} "
                         f"(folder {p.parent})") from None
    return p


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", *,
                    required: tuple[str, ...] = ()) -> Any:
    """Load a file written by :func:`atomic_save` (trusted files only: this unpickles).

    :class:`CheckpointError` naming ``path`` when the file is missing, empty, truncated or
    corrupt, or -- with ``required`` keys (``FIT_KEYS`` for a checkpoint of
    :func:`sepneuron.fit`) -- when it is not a dict holding them all.
    """
    p = Path(path)
    remove_stale_temporaries(p)
    if p.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    try:
        state = torch.load(_open_payload(p, path), map_location=map_location,
                           weights_only=False)
    except CheckpointError:
        raise
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # noqa: BLE001 - whatever unpickling raised: name the file
        raise CheckpointError(f"checkpoint {path} cannot be read (empty, truncated or not a "
                              f"checkpoint): {type(e).__name__}: {e}") from None
    missing = [k for k in required if not isinstance(state, dict) or k not in state]
    if missing:
        got = sorted(map(str, state))[:6] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a checkpoint of sepneuron.fit (no "
                              f"{', '.join(missing)}; it holds {got})")
    return state

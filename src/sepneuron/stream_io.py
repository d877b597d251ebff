"""Row-chunked reading and atomic writing of 2-D float arrays in ``.npy``, ``.npz`` and ``.csv``.

What is streamed (memory is one chunk of rows, not the file):

* ``.npy``: the header, then a chunk of rows at a time with plain reads (no memory map:
  mapped pages would count in the resident memory as the file is read).
* ``.npz``: the member ``KEY.npy`` is read through its zip stream the same way, whether
  the archive is stored (``np.savez``) or compressed (``np.savez_compressed``): members
  of an archive cannot be memory-mapped, but they can be decompressed incrementally.
* A Fortran-ordered array (rare; ``np.save`` of a transposed array) is read whole.
* ``.csv``: comma separated, an optional header line of names, ``#`` comments and blank
  lines skipped; parsed a chunk of lines at a time.

Writers go through :func:`sepneuron.checkpoint.atomic_open`, so a failure leaves no partial
file. ``.npy`` and ``.npz`` need the row count in their header: when it is not known in
advance (a ``.csv`` input) the rows are spooled to a temporary file beside the output first.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .checkpoint import atomic_open

__all__ = ["FORMATS", "RowSource", "open_rows", "write_rows"]

FORMATS = (".npy", ".npz", ".csv")


def _format(path: Path, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{what} {path}: unknown format {suffix or '(no suffix)'!r}; "
                         f"use one of {', '.join(FORMATS)}")
    return suffix


@dataclass
class RowSource:
    """A 2-D array read in chunks: ``n_cols`` columns, ``n_rows`` rows (``None``: unknown
    until read, for ``.csv``), ``names`` from a CSV header (else ``None``)."""

    path: Path
    n_cols: int
    n_rows: int | None
    names: list[str] | None
    _chunks: Any

    def chunks(self, rows: int) -> Iterator[np.ndarray]:
        """Float64 arrays ``(<= rows, n_cols)``, in file order."""
        return self._chunks(rows)


def open_rows(path: str | os.PathLike, key: str = "X") -> RowSource:
    """Open ``path`` (``.npy``, ``.npz`` member ``key``, ``.csv``) for chunked reading;
    ``ValueError`` (one line) for a missing file, an unknown format or a non-numeric array."""
    p = Path(path)
    fmt = _format(p, "--data")
    if not p.is_file():
        raise ValueError(f"--data {p}: no such file")
    if fmt == ".csv":
        return _open_csv(p)
    if fmt == ".npy":
        return _open_npy(p, lambda: open(p, "rb"), "")
    return _open_npz_member(p, key)


def _check_numeric(dtype: np.dtype, ndim: int, p: Path) -> None:
    if dtype.kind not in "biuf":
        raise ValueError(f"--data {p}: the array is not numeric (dtype {dtype})")
    if ndim not in (1, 2):
        raise ValueError(f"--data {p}: the array must be 1-D or 2-D (rows, features), "
                         f"it is {ndim}-D")


def _open_npz_member(p: Path, key: str) -> RowSource:
    try:
        with zipfile.ZipFile(p) as zf:
            names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"--data {p}: cannot read it as .npz ({type(e).__name__}: {e})") from None
    if key not in names and len(names) == 1:
        key = names[0]  # a single array: whatever its name
    if key not in names:
        raise ValueError(f"--data {p}: no array {key!r} (it has: "
                         f"{', '.join(sorted(names)) or 'nothing'}; see --key)")

    @contextlib.contextmanager
    def member() -> Iterator[IO[bytes]]:
        with zipfile.ZipFile(p) as zf, zf.open(key + ".npy") as f:
            yield f

    return _open_npy(p, member, f"array {key!r} ")


def _open_npy(p: Path, opener: Callable[[], Any], what: str) -> RowSource:
    """Rows of the .npy stream that ``opener()`` opens (a file, or a member of an archive)."""
    try:
        with opener() as f:
            shape, fortran, dtype = _npy_header(f)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ValueError(f"--data {p}: cannot read {what}as .npy "
                         f"({type(e).__name__}: {e})") from None
    _check_numeric(dtype, len(shape), p)
    n_rows, n_cols = shape[0], (shape[1] if len(shape) == 2 else 1)

    def chunks(rows: int) -> Iterator[np.ndarray]:
        with opener() as f:
            _npy_header(f)
            if fortran and len(shape) == 2:  # column-major: rows are not contiguous
                whole = np.frombuffer(f.read(), dtype=dtype).reshape(shape, order="F")
                for i in range(0, n_rows, rows):
                    yield np.asarray(whole[i:i + rows], dtype=np.float64)
                return
            row_bytes = n_cols * dtype.itemsize
            for i in range(0, n_rows, rows):
                want = min(rows, n_rows - i)
                buf = f.read(want * row_bytes)
                if len(buf) != want * row_bytes:
                    raise ValueError(f"--data {p}: {what}is truncated")
                yield np.frombuffer(buf, dtype=dtype).reshape(want, n_cols).astype(np.float64)

    return RowSource(p, n_cols, n_rows, None, chunks)


def _npy_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    read = {(1, 0): np.lib.format.read_array_header_1_0,
            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read is None:
        raise ValueError(f"unsupported .npy version {version}")
    shape, fortran, dtype = read(f)
    return shape, fortran, dtype


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _open_csv(p: Path) -> RowSource:
    try:
        with open(p, encoding="utf-8") as f:
            first = next((line for line in f if line.strip() and not line.startswith("#")), None)
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--data {p}: cannot read it as CSV text ({type(e).__name__})") from None
    if first is None:
        raise ValueError(f"--data {p}: no rows")
    cells = [c.strip() for c in first.split(",")]
    header = not all(_is_number(c) for c in cells)

    def chunks(rows: int) -> Iterator[np.ndarray]:
        with open(p, encoding="utf-8") as f:
            lines = enumerate(f, start=1)
            if header:  # consume everything up to and including the header line
                for _, s in lines:
                    if s.strip() and not s.startswith("#"):
                        break
            while block := list(itertools.islice(lines, rows)):
                span = f"lines {block[0][0]}-{block[-1][0]}"
                try:
                    out = np.loadtxt([s for _, s in block], delimiter=",", dtype=np.float64,
                                     ndmin=2)
                except ValueError as e:
                    raise ValueError(f"--data {p}: {span}: {e}") from None
                if out.size == 0:  # only blank lines and comments
                    continue
                if out.shape[1] != len(cells):
                    raise ValueError(f"--data {p}: {span} have {out.shape[1]} columns, "
                                     f"the first row has {len(cells)}")
                yield out

    return RowSource(p, len(cells), None, cells if header else None, chunks)


def write_rows(path: str | os.PathLike, chunks: Iterator[np.ndarray], n_cols: int,
               n_rows: int | None, *, key: str = "y", names: list[str] | None = None) -> int:
    """Write float64 chunks ``(rows, n_cols)`` to ``path`` (``.npy``, ``.npz`` member ``key``,
    ``.csv`` with a header of ``names``) atomically; returns the number of rows written.
    ``n_rows``: the total if known (else ``.npy`` / ``.npz`` spool to a temporary file)."""
    p = Path(path)
    fmt = _format(p, "--out")
    if fmt == ".csv":
        with atomic_open(p, "w", encoding="utf-8", newline="") as f:
            f.write(",".join(names or [f"{key}{j}" for j in range(n_cols)]) + "\n")
            total = 0
            for c in chunks:
                np.savetxt(f, c, delimiter=",", fmt="%.17g")
                total += len(c)
        return total
    if n_rows is None:  # the header needs the count: spool, then copy
        with tempfile.TemporaryFile(dir=p.parent if p.parent.exists() else None) as tmp:
            n_rows = 0
            for c in chunks:
                tmp.write(np.ascontiguousarray(c, dtype=np.float64).tobytes())
                n_rows += len(c)
            tmp.seek(0)
            return _write_npy_like(p, fmt, key, n_rows, n_cols,
                                   lambda out: shutil.copyfileobj(tmp, out))

    def copy(out: IO[bytes]) -> None:
        done = 0
        for c in chunks:
            out.write(np.ascontiguousarray(c, dtype=np.float64).tobytes())
            done += len(c)
        if done != n_rows:
            raise ValueError(f"--out {p}: expected {n_rows} rows, got {done}")

    return _write_npy_like(p, fmt, key, n_rows, n_cols, copy)


def _write_npy_like(p: Path, fmt: str, key: str, n_rows: int, n_cols: int, body) -> int:
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float64)),
              "fortran_order": False, "shape": (n_rows, n_cols)}
    with atomic_open(p, "wb") as f:
        if fmt == ".npy":
            np.lib.format.write_array_header_1_0(f, header)
            body(f)
        else:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf, \
                    zf.open(key + ".npy", "w", force_zip64=True) as m:
                np.lib.format.write_array_header_1_0(m, header)
                body(m)
    return n_rows

"""The one way to read a file that may be compressed (bottom layer).

``.gz`` and ``.zst`` are read by name; a file whose name says nothing is still
decompressed when its first bytes are gzip's or zstd's magic number (a visitor log saved
without its ``.gz``). Errors are :class:`~psanalytics.errors.InputError` naming the file.

>>> import gzip, pathlib, tempfile
>>> p = pathlib.Path(tempfile.mkdtemp()) / "a.ndjson.gz"
>>> _ = p.write_bytes(gzip.compress(b'{"a": 1}\\n'))
>>> read_bytes(p)
b'{"a": 1}\\n'
"""

from __future__ import annotations

import os
from pathlib import Path

from psanalytics.errors import InputError

__all__ = ["COMPRESSIONS", "MAX_RATIO", "MIN_CAP", "read_bytes", "decompress", "compression_of"]

#: Compressed-file suffixes we read and write.
COMPRESSIONS = (".gz", ".zst")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def compression_of(name: str | os.PathLike[str], data: bytes = b"") -> str | None:
    """``".gz"``, ``".zst"`` or None: from the name's suffix, else from ``data``'s magic."""
    lower = os.fspath(name).lower()
    for comp in COMPRESSIONS:
        if lower.endswith(comp):
            return comp
    if data[:2] == _GZIP_MAGIC:
        return ".gz"
    if data[:4] == _ZSTD_MAGIC:
        return ".zst"
    return None


#: A compressed file may expand to at most this many times its size (or MIN_CAP bytes,
#: whichever is more): event JSON compresses 10-30x, a decompression bomb 1,000-30,000x.
MAX_RATIO = 1000
MIN_CAP = 256 * 1024 * 1024


def read_bytes(path: str | os.PathLike[str], *, max_ratio: int = MAX_RATIO,
               min_cap: int = MIN_CAP) -> bytes:
    """The file's bytes, decompressed when it is ``.gz``/``.zst`` (by name or magic),
    refusing to expand past ``max(min_cap, max_ratio * compressed size)``."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read ({exc})", path=str(p)) from None
    return decompress(raw, compression_of(p.name, raw), str(p),
                      max_ratio=max_ratio, min_cap=min_cap)


def decompress(raw: bytes, comp: str | None, path: str = "<bytes>", *,
               max_ratio: int = MAX_RATIO, min_cap: int = MIN_CAP) -> bytes:
    """``raw`` decompressed as ``comp`` (``".gz"``, ``".zst"``; None returns it as is)."""
    cap = max(min_cap, max_ratio * len(raw))
    try:
        if comp == ".gz":
            return _gzip_decompress(raw, path, cap, max_ratio)
        if comp == ".zst":
            return _zstd_decompress(raw, path, cap, max_ratio)
    except InputError:
        raise
    except Exception as exc:  # zstandard.ZstdError, gzip.BadGzipFile, EOFError
        raise InputError(f"cannot decompress {comp} data ({exc})", path=path) from None
    return raw


def _bomb(path: str, comp: str, raw: bytes, cap: int, max_ratio: int) -> InputError:
    return InputError(f"{comp} data expands past {cap:,} bytes (more than {max_ratio:,} times its "
                      f"{len(raw):,} bytes): refusing to read it (a decompression bomb?)", path=path)


def _gzip_decompress(raw: bytes, path: str, cap: int, max_ratio: int) -> bytes:
    """gzip members one after the other, each streamed under the size cap."""
    import zlib

    out: list[bytes] = []
    total = 0
    rest = raw
    while rest:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        data = rest
        while True:
            chunk = d.decompress(data, 1 << 20)
            total += len(chunk)
            if total > cap:
                raise _bomb(path, ".gz", raw, cap, max_ratio)
            out.append(chunk)
            if d.eof or not d.unconsumed_tail:
                break
            data = d.unconsumed_tail
        if not d.eof:
            raise InputError("cannot decompress .gz data (Compressed file ended before the "
                             "end-of-stream marker was reached)", path=path)
        rest = d.unused_data.lstrip(b"\x00")
    return b"".join(out)


def _zstd_decompress(raw: bytes, path: str, cap: int, max_ratio: int) -> bytes:
    """Every zstd frame in ``raw``, checking that the last one is complete (a stream
    reader returns what it has of a cut-off frame without a word), under the size cap
    (from the frame's declared size when it has one, else counted in small steps)."""
    import zstandard

    out: list[bytes] = []
    total = 0
    rest = raw
    while rest:
        try:
            declared = zstandard.frame_content_size(rest)
        except zstandard.ZstdError:
            declared = -1
        if declared is not None and declared > cap - total:
            raise _bomb(path, ".zst", raw, cap, max_ratio)
        d = zstandard.ZstdDecompressor().decompressobj()
        if declared is not None and declared >= 0:
            out.append(d.decompress(rest))
            total += len(out[-1])
        else:  # no declared size: feed small steps so the output is checked as it grows
            step = 4096
            for i in range(0, len(rest), step):
                chunk = d.decompress(rest[i:i + step])
                total += len(chunk)
                if total > cap:
                    raise _bomb(path, ".zst", raw, cap, max_ratio)
                out.append(chunk)
                if d.eof:
                    break
        if total > cap:
            raise _bomb(path, ".zst", raw, cap, max_ratio)
        if not d.eof:
            done = sum(len(b) for b in out)
            raise InputError(f"truncated .zst: the data ends inside a compressed frame "
                             f"({len(raw):,} bytes read, {done:,} decompressed); the file was "
                             "cut short (an interrupted copy or download?)", path=path)
        rest = d.unused_data
    return b"".join(out)

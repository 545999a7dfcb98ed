"""psanalytics._files: the one reader of (maybe) compressed files."""

from __future__ import annotations

import gzip

import pytest
import zstandard

from psanalytics._files import read_bytes
from psanalytics.errors import InputError

DATA = b'{"TrackId": "a"}\n' * 50


def test_by_name_and_by_magic(tmp_path):
    (tmp_path / "a.ndjson.gz").write_bytes(gzip.compress(DATA))
    (tmp_path / "a.ndjson.zst").write_bytes(zstandard.ZstdCompressor().compress(DATA))
    (tmp_path / "log.json").write_bytes(gzip.compress(DATA))  # a gzip saved without .gz
    (tmp_path / "log2.json").write_bytes(zstandard.ZstdCompressor().compress(DATA))
    (tmp_path / "plain.ndjson").write_bytes(DATA)
    for name in ("a.ndjson.gz", "a.ndjson.zst", "log.json", "log2.json", "plain.ndjson"):
        assert read_bytes(tmp_path / name) == DATA, name


def test_errors_name_the_file(tmp_path):
    cut = tmp_path / "cut.ndjson.zst"
    full = zstandard.ZstdCompressor().compress(DATA)
    cut.write_bytes(full[: len(full) // 2])
    with pytest.raises(InputError) as ei:
        read_bytes(cut)
    assert str(ei.value).startswith(f"{cut}: truncated .zst: the data ends inside a compressed frame")
    bad = tmp_path / "bad.ndjson.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(InputError, match=r"bad.ndjson.gz: cannot decompress .gz data"):
        read_bytes(bad)
    with pytest.raises(InputError, match=r"missing.ndjson: cannot read"):
        read_bytes(tmp_path / "missing.ndjson")

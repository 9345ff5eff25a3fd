"""Gzip landing data is expanded with a cap: a decompression bomb is refused, never held."""

from __future__ import annotations

import gzip
import tracemalloc
import zlib

import pytest

from hitl_gate.core.settings import (
    DEFAULT_MAX_GUNZIP_BYTES,
    GUNZIP_CAP_ENV,
    HitlSettings,
    SettingsError,
)
from hitl_gate.ingest.gunzip import GzipTooLarge, gunzip_capped
from pipelines.resources import build_resources

MIB = 1 << 20


def bomb(expanded_mib: int) -> bytes:
    """A real high-ratio gzip file: `expanded_mib` MiB of zeros, compressed (~1000:1).

    One gzip member, one deflate stream, as `gzip` writes it, but compressed once: after a
    full flush the compressor starts each MiB of zeros from the same state, so every MiB after
    the first is the same bytes (deflating 256 MiB took 0.7 s of the suite). The trailer holds
    the CRC-32 and size of everything the member expands to, so it is a valid gzip file."""
    zeros = bytes(MIB)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate
    first = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    repeated = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(expanded_mib):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # deflate, no name, best compression
    trailer = crc.to_bytes(4, "little") + (expanded_mib * MIB % 2**32).to_bytes(4, "little")
    body = first + repeated * (expanded_mib - 1) + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return header + body + trailer


def test_the_bomb_is_one_gzip_member_of_zeros_that_gzip_itself_expands() -> None:
    packed = bomb(3)
    assert gzip.decompress(packed) == bytes(3 * MIB)
    reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert len(reader.decompress(packed)) == 3 * MIB and reader.eof and not reader.unused_data


def test_expands_like_gzip_within_the_cap() -> None:
    text = b"application_id,amount\n" + b"".join(b"A-%d,%d\n" % (i, i) for i in range(5000))
    packed = gzip.compress(text)
    assert gunzip_capped(packed, len(text)) == text  # exactly at the cap is allowed
    two_members = packed + gzip.compress(b"A-x,1\n")  # as `cat a.gz b.gz` makes
    assert gunzip_capped(two_members, 10 * MIB) == gzip.decompress(two_members)
    assert gunzip_capped(gzip.compress(b""), 1) == b""


def test_one_byte_over_the_cap_is_refused() -> None:
    text = b"x" * 10_000
    with pytest.raises(GzipTooLarge, match="9,999 bytes"):
        gunzip_capped(gzip.compress(text), len(text) - 1)
    with pytest.raises(GzipTooLarge):  # the second member pushes it over
        gunzip_capped(gzip.compress(text) + gzip.compress(b"y"), len(text))


def test_a_bomb_is_refused_holding_no_more_than_the_cap() -> None:
    packed = bomb(256)
    assert len(packed) < 512 * 1024, "a real bomb: 256 MiB from under half a megabyte"
    cap = 8 * MIB
    tracemalloc.start()
    try:
        with pytest.raises(GzipTooLarge):
            gunzip_capped(packed, cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * cap, f"peak {peak:,} bytes while refusing a 256 MiB bomb"


def test_bad_and_truncated_gzip_fail_as_gzip_does() -> None:
    packed = gzip.compress(b"a,b\n1,2\n" * 1000)
    with pytest.raises(EOFError):
        gunzip_capped(packed[: len(packed) // 2], MIB)
    with pytest.raises(zlib.error):
        gunzip_capped(b"not gzip at all", MIB)


def test_the_cap_is_a_typed_setting_with_a_documented_default(tmp_path) -> None:
    assert HitlSettings.from_environ({}).landing_max_gunzip_bytes == DEFAULT_MAX_GUNZIP_BYTES
    settings = HitlSettings.from_environ({GUNZIP_CAP_ENV: "1048576"}, home=tmp_path)
    assert settings.landing_max_gunzip_bytes == MIB
    assert build_resources(settings)["landing"].max_gunzip_bytes == MIB
    assert settings.to_environ()[GUNZIP_CAP_ENV] == "1048576"
    for bad in ("0", "-5", "2GB"):
        with pytest.raises(SettingsError, match=GUNZIP_CAP_ENV):
            HitlSettings.from_environ({GUNZIP_CAP_ENV: bad})

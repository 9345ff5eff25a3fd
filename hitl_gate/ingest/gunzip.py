"""Gzip landing files expanded with a cap: a few kilobytes must never become gigabytes in memory.

A `.csv.gz` of zeros compresses about 1000 to 1; a crafted file (a decompression bomb) more.
`gzip.decompress` expands whatever it is given, so a 2 MB file could hold the ingest process's
whole memory. Here the data is expanded in bounded steps and refused as soon as it would pass
the cap (`HITL_LANDING_MAX_GUNZIP_BYTES`), holding at most the cap plus one step; several gzip
members in one file are read one after the other, as `gzip` does.
"""

from __future__ import annotations

import zlib

_GZIP = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream


class GzipTooLarge(ValueError):
    """The data expands beyond the cap: it is refused, not read."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"expands beyond {limit:,} bytes")
        self.limit = limit


def gunzip_capped(data: bytes, limit: int) -> bytes:
    """The expanded bytes of gzip `data`, or GzipTooLarge once they pass `limit` bytes.

    Raises zlib.error for data that is not gzip and EOFError for a truncated stream, like
    `gzip.decompress`.
    """
    out = bytearray()
    rest = data
    while True:
        stream = zlib.decompressobj(_GZIP)
        pending = rest
        while not stream.eof:
            # max_length is never 0 here (0 would mean unbounded): out holds at most `limit`.
            piece = stream.decompress(pending, limit + 1 - len(out))
            out += piece
            if len(out) > limit:
                raise GzipTooLarge(limit)
            pending = stream.unconsumed_tail
            if not pending and not piece and not stream.eof:
                raise EOFError("compressed data ended before the end-of-stream marker")
        rest = stream.unused_data
        if not rest:
            return bytes(out)

"""Where a big day's accepted rows wait while the day is accounted for: a scratch Arrow file.

`validated_cases` validates a day slice by slice, but its accepted rows cannot go straight to
the step's output: which of them another partition already holds is only known once the whole
day was read (`record_day_batch`, in one audit transaction), and those are withheld. Up to one
slice of rows waits in memory (a small day stays one frame, the whole-frame path); beyond
that, rows are appended to an Arrow IPC file (LZ4 frames: about a memory copy to write and to
read; a Parquet spill cost about 3 CPU s per million rows, more than validating them), then
handed on slice by slice (`drain`).

A file parsed in slices may turn out, at a later slice, to be unreadable as first read (a value
the reader cannot take as a number, a broken line): its rows put so far are then taken back
(`mark`, `undo`) and the file read again; rows already written stay in the file, never read
back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc

from hitl_gate.core.slices import consecutive_groups

WITHHELD_KEYS = ["_source_sha256", "_source_row"]


class AcceptedSpill:
    """Accepted rows held in memory up to `limit` rows, beyond that in the file at `path`."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self._frames: list[tuple[int, pl.DataFrame]] = []  # (put number, rows) held
        self._held = 0
        self._puts = 0
        self._sink: pa.OSFile | None = None
        self._writer: ipc.RecordBatchFileWriter | None = None
        self._schema: pa.Schema | None = None
        self._batch_rows: list[int] = []  # rows of each record batch written, in order
        self._batch_puts: list[int] = []  # the put each record batch came from
        self._undone: set[int] = set()  # record batches of puts taken back (`undo`)

    @property
    def spilled(self) -> bool:
        """Whether the rows go to the scratch file (the day is more than one slice)."""
        return self._writer is not None

    def put(self, frame: pl.DataFrame) -> None:
        self._puts += 1
        if not self.spilled and self._held + frame.height <= self.limit:
            self._frames.append((self._puts, frame))
            self._held += frame.height
            return
        held, self._frames, self._held = self._frames, [], 0
        for number, part in [*held, (self._puts, frame)]:
            self._append(part, number)

    def mark(self) -> int:
        """Where the rows stand now, for `undo`."""
        return self._puts

    def undo(self, mark: int) -> None:
        """Take back every row put since `mark`: dropped if held, never read back if written."""
        self._frames = [(number, f) for number, f in self._frames if number <= mark]
        self._held = sum(f.height for _, f in self._frames)
        self._undone.update(i for i, number in enumerate(self._batch_puts) if number > mark)

    def expect(self, rows: int) -> None:
        """About `rows` more rows are coming: if they and what is held exceed one slice, the
        held rows go to the file now, not while the next file's frame is also in memory."""
        if not self.spilled and self._frames and self._held + rows > self.limit:
            held, self._frames, self._held = self._frames, [], 0
            for number, part in held:
                self._append(part, number)

    def _append(self, frame: pl.DataFrame, number: int) -> None:
        table = frame.to_arrow(compat_level=pl.CompatLevel.newest())
        if self._writer is None:
            self._schema = table.schema
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._sink = pa.OSFile(str(self.path), "wb")
            options = ipc.IpcWriteOptions(compression="lz4")
            self._writer = ipc.new_file(self._sink, self._schema, options=options)
        elif table.schema != self._schema:
            table = table.cast(self._schema)
        for batch in table.to_batches():
            self._writer.write_batch(batch)
            self._batch_rows.append(batch.num_rows)
            self._batch_puts.append(number)

    def drain(self, withheld: pl.DataFrame, write: Callable[[pl.DataFrame], None]) -> None:
        """Hand the accepted rows, less those `withheld` (`WITHHELD_KEYS`), to `write`: one
        frame if they were held in memory, else about `limit` rows at a time from the file."""
        if not self.spilled:
            frames = [f for _, f in self._frames]
            self._frames = []
            write(_without(pl.concat(frames) if len(frames) != 1 else frames[0], withheld))
            return
        self._close()
        for part in self._read_back():
            write(_without(part, withheld))

    def _read_back(self) -> Iterator[pl.DataFrame]:
        with pa.OSFile(str(self.path), "rb") as source:
            reader = ipc.open_file(source)
            indexes = [i for i in range(len(self._batch_rows)) if i not in self._undone]
            if not indexes:  # every row put was taken back: the day's output has none
                yield pl.DataFrame(pl.from_arrow(reader.schema.empty_table()))
                return
            for group in consecutive_groups(indexes, self._batch_rows.__getitem__, self.limit):
                table = pa.Table.from_batches([reader.get_batch(i) for i in group], self._schema)
                yield pl.DataFrame(pl.from_arrow(table))

    def _close(self) -> None:
        """Finish the file (once: `spilled` stays true, the file is still read back)."""
        if self._writer is not None and self._sink is not None and not self._sink.closed:
            self._writer.close()
            self._sink.close()

    def discard(self) -> None:
        """Drop what is held and delete the scratch file (done, or the step failed)."""
        self._frames = []
        self._close()
        self.path.unlink(missing_ok=True)


def _without(accepted: pl.DataFrame, withheld: pl.DataFrame) -> pl.DataFrame:
    if withheld.height == 0:
        return accepted
    return accepted.join(withheld, on=WITHHELD_KEYS, how="anti", maintain_order="left")

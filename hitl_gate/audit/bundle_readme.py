"""The README written into every regulator bundle: how to check it by hand.

Kept as text in a module (not a data file) so it ships with the package like the code that
writes the files it describes.
"""

README = """\
# hitl-gate audit bundle

This folder proves what hitl-gate recorded about the cases decided in the partition days named
in `manifest.json` (`from`..`to`, by `decisions.partition_date`). It can be checked without
hitl-gate and without its database: with `sha256sum`, `openssl` (3.x) and a few lines of any
language, or with the included `verify_bundle.py` (Python 3 + the `cryptography` package):

    python verify_bundle.py . --public-key <the operator's published Ed25519 key, hex>

## Files

- `manifest.json`: scope, counts, the log ranges, and the SHA-256 of every other file.
- `manifest.sig`: Ed25519 signature (hex) of the exact bytes of `manifest.json`.
- `SHA256SUMS`: the same hashes, for `sha256sum -c SHA256SUMS`.
- `public_keys.txt`: the Ed25519 public keys (raw, hex) that signed; `public_key.pem`: the
  manifest signer's key as PEM, for `openssl`.
- `checkpoints/checkpoint-<last seq>.json`: signed checkpoints (first and last seq, head hash,
  Merkle root, run, time, key, signature).
- `log/entries-<first>-<last>.tsv`: the whole audit log range of each checkpoint, one entry a
  line: `seq`, `entry_hash`, `entry`, tab-separated.
- `lineage/<event type>.jsonl`: each exported lineage row as its canonical JSON text, a line
  each; `lineage/index.csv`: per row, its event type, line, the `seq` of its log entry, entity
  key and SHA-256.
- `trace/case_trace.parquet` and `.csv`: the end-to-end trace of every case in scope (lists as
  JSON text in the CSV).
- `handovers/key-handover-<seq>.json` (when the key was rotated): "checkpoints after `seq`
  are signed by `new_public_key`", signed by the key trusted until then and by the new key
  (both over the compact JSON of `after_seq, created_at, new_public_key, old_public_key` and
  `"purpose": "hitl-gate checkpoint key hand-over"`, sorted keys). Follow them from the
  operator's published key: each checkpoint must be signed by the key valid for its first
  entry, and the manifest by the newest.
- `segments/<segment id>/log/` and `segments/<segment id>/checkpoints/` (when runs sealed
  through per-run segments): the same, for each segment chain holding an exported row;
  `global/leaves.json`: every folded segment checkpoint (a leaf), in order;
  `global/checkpoints.json`: every signed global checkpoint over the leaves, in order. Key
  hand-overs then also name `after_global_seq`, the last global checkpoint of the old key
  (signed with the other fields when present).
- `verify_bundle.py`: a standalone checker doing every step below.

## Checking by hand

1. **Files.** `sha256sum -c SHA256SUMS` passes; the hashes equal `files` in `manifest.json`.
   The manifest is signed: `xxd -r -p manifest.sig > /tmp/m.sig && openssl pkeyutl -verify
   -pubin -inkey public_key.pem -rawin -in manifest.json -sigfile /tmp/m.sig`.
   Compare `public_keys.txt` with the key the operator published elsewhere.
2. **Chain.** In each `log/entries-*.tsv`, `entry` is `<hash of the previous entry>|<JSON
   envelope>` and `entry_hash` is SHA-256 (hex) of the entry's UTF-8 bytes, e.g.
   `sed -n 1p FILE | cut -f3 | tr -d '\\n' | sha256sum`. The first line's entry starts with the
   range's `prev_hash` in `manifest.json` (64 zeros for seq 1); every later one with the hash of
   the line before. `seq` counts up by one. A range's `prev_hash` ties it to the log before
   it, which the bundle does not ship unless that range is shipped too (then the two link).
3. **Checkpoints.** For each range, the last entry's hash is the checkpoint's `head_hash`; the
   Merkle root of the range's entry hashes (as raw 32-byte values, in seq order; each level
   hashes groups of `merkle_fanout` consecutive nodes, their bytes concatenated, a last group
   of several nodes likewise, while a last single node moves up unchanged; `merkle_fanout` is
   16, or 2 when the checkpoint has no such field) is its `merkle_root`. The signature covers
   the compact JSON of `created_at, first_seq, head_hash, last_seq, merkle_root, public_key,
   run_id`, plus `merkle_fanout` when it is not 2, with sorted keys and no spaces:
   `jq -cjS '{first_seq,last_seq,head_hash,merkle_fanout,merkle_root,run_id,created_at,
   public_key}' FILE` (one line; drop `merkle_fanout` from the list when it is 2 or absent).
   Verify it with `openssl pkeyutl -verify -rawin` as in step 1 (signature: the `signature`
   field, hex; key: the `public_key` field, raw hex).
4. **Rows.** For each line of `lineage/index.csv`, SHA-256 of line `line` of
   `lineage/<event_type>.jsonl` (without its line break) equals `content_digest`, and the log
   entry with that `seq` (in the chain of the segment named by `segment`, else the single
   chain) has the same `"type"`, `"key"` and `"digest"` in its envelope. So every exported
   row is exactly what was sealed into a signed chain.
5. **Segments and global checkpoints** (when `global/` is present). Steps 2 and 3 hold for
   each segment range as for the single chain. A leaf's `leaf_hash` is SHA-256 (hex) of the
   compact JSON of its `segment_id, last_seq, head_hash, merkle_root, signature` (sorted
   keys); `leaf_seq` counts 1, 2, 3... Each global checkpoint signs the compact JSON of
   `global_seq, leaves, tree_root, previous_hash, created_at, public_key` (sorted keys):
   `tree_root` is the Merkle root (fan-out 16, as in step 3) of the raw leaf hashes
   1..`leaves`; `previous_hash` is SHA-256 (hex) of the previous global checkpoint's signed
   bytes followed by its `signature` text (64 zeros for the first). Every segment range's
   checkpoint equals a leaf (same segment, `last_seq`, head hash, Merkle root and signature)
   under a global checkpoint, and is signed by that global checkpoint's key; a global
   checkpoint is signed by the operator's key, or the key a hand-over with a lower
   `after_global_seq` passed it to.

## What the rows are

A lineage row's canonical JSON holds its columns in table order, except those that change on an
identical re-run (run ids, wall-clock times), which are left out of the digest: timestamps as
UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ`, doubles as their shortest round-trip text in a string, dates
as `YYYY-MM-DD`, null as `null`. The event types and tables are described in hitl-gate's
`docs/audit.md`. The trace copies are for reading; their integrity rests on the signed
manifest, the rows' on the chain.
"""

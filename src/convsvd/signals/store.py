"""On-disk layout of a profile run: Parquet shards and a JSON manifest.

::

    OUT/manifest.json                 run metadata: model hash, options, dataset, versions,
                                      layers, finished shards, per-layer statistics
    OUT/shards/shard-000000.parquet   the rows of shard 0 (batches 0 … k−1), one row group per layer

A shard is streamed (row groups of one site each) into a hidden temporary file
and renamed when complete, so a ``shard-*.parquet`` file is always whole:
its presence is what marks it finished. Each shard carries its own metadata (the run key, its inputs, its
per-layer counts) in the Parquet footer, so a resumed run, and the manifest,
can be built from the shards alone.

Columns (one row per input × SVD neuron):

====================  ========  ===========================================================
``id``                int64     the input's id in its dataset
``label``             int64     class index, −1 when unlabelled
``layer``             string    site: layer name, ``name#k`` for the k-th extra call
``group``             int32     group ``j`` of the layer (0 unless grouped conv)
``neuron``            int32     index ``i`` within the group (singular values descending)
``sigma``             float     ``σ_i`` of the neuron
``signal``            float     aggregated ``u_iᵀ(y − b)``
``influential``       bool      in the input's influential set for this layer
``weight``            float     relative weight in that set (0 outside it)
====================  ========  ===========================================================

Floats are float32, or float64 when the projection ran in float64.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from convsvd._meta import _umask, write_atomic
from convsvd.errors import InputError

__all__ = ["COLUMNS", "FORMAT", "MANIFEST", "SHARDS", "ShardWriter", "schema", "shard_path"]

FORMAT = "convsvd-signals/1"
MANIFEST = "manifest.json"
SHARDS = "shards"
META_KEY = b"convsvd"
COLUMNS = ("id", "label", "layer", "group", "neuron", "sigma", "signal", "influential", "weight")
_DICTIONARY = ("id", "label", "layer", "group", "neuron", "sigma")


def schema(float64: bool) -> pa.Schema:
    f = pa.float64() if float64 else pa.float32()
    return pa.schema([("id", pa.int64()), ("label", pa.int64()), ("layer", pa.string()), ("group", pa.int32()),
                      ("neuron", pa.int32()), ("sigma", f), ("signal", f), ("influential", pa.bool_()), ("weight", f)])


def shard_path(out: Path, index: int) -> Path:
    return out / SHARDS / f"shard-{index:06d}.parquet"


class ShardWriter:
    """Streams the rows of one shard into a hidden temporary file; :meth:`commit` renames it into place.

    Rows are kept per site until ``row_group_rows`` of them are pending, then
    written as one row group of that site alone (a per-layer query skips the
    other row groups by their statistics). The row group is encoded and written
    by a background thread while the next batches are computed, one row group at
    a time: the next one waits for it, and its error, if any, is raised there or
    by :meth:`commit`. Memory: at most ``row_group_rows`` rows per site plus the
    row group being written, whatever the shard size.
    """

    def __init__(self, path: Path, index: int, float64: bool, row_group_rows: int = 1 << 17) -> None:
        self.path, self.index, self.float64 = path, index, float64
        self.batches: list[int] = []
        self.inputs = 0
        self.influential: dict[str, int] = {}
        self.row_group_rows = row_group_rows
        self._schema = schema(float64)
        self._fdt = np.float64 if float64 else np.float32
        self._pending: dict[str, list[tuple[np.ndarray, ...]]] = {}
        self._rows: dict[str, int] = {}
        self._info: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        # dictionary encoding pays on the repeated columns only; on the float signals it costs 3× the write time
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self._tmp, self._schema, use_dictionary=list(_DICTIONARY))
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._writing: concurrent.futures.Future[None] | None = None

    def add(self, site: str, ids: np.ndarray, labels: np.ndarray, signal: np.ndarray, mask: np.ndarray,
            weight: np.ndarray, groups: np.ndarray, neurons: np.ndarray, sigma: np.ndarray) -> None:
        """One batch of one site: ``signal``, ``mask``, ``weight`` ``(B, K)``; ``groups``, ``neurons``, ``sigma`` ``(K,)``."""
        self._info.setdefault(site, (groups, neurons, sigma))
        self._pending.setdefault(site, []).append((ids, labels, signal, mask, weight))
        self._rows[site] = self._rows.get(site, 0) + signal.size
        self.influential[site] = self.influential.get(site, 0) + int(mask.sum())
        if self._rows[site] >= self.row_group_rows:
            self._flush(site)

    def _flush(self, site: str) -> None:
        parts = self._pending.pop(site, [])
        self._rows.pop(site, None)
        if not parts:
            return
        self._wait()  # one row group in flight at most
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="convsvd-shard")
        self._writing = self._pool.submit(self._write, site, parts)

    def _wait(self) -> None:
        """Wait for the row group being written; raise its error, if any."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _write(self, site: str, parts: list[tuple[np.ndarray, ...]]) -> None:
        groups, neurons, sigma = self._info[site]
        K = groups.size
        ids = np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False)
        B, n, fdt = ids.size, ids.size * K, self._fdt
        name = site.encode()
        offsets = np.arange(n + 1, dtype=np.int32) * len(name)
        layer = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(name * n))
        table = pa.Table.from_arrays([
            pa.array(np.repeat(ids, K)),
            pa.array(np.repeat(np.concatenate([p[1] for p in parts]).astype(np.int64, copy=False), K)),
            layer,
            pa.array(np.tile(groups.astype(np.int32, copy=False), B)),
            pa.array(np.tile(neurons.astype(np.int32, copy=False), B)),
            pa.array(np.tile(sigma.astype(fdt, copy=False), B)),
            pa.array(np.concatenate([p[2].reshape(-1) for p in parts]).astype(fdt, copy=False)),
            pa.array(np.concatenate([p[3].reshape(-1) for p in parts]).astype(bool, copy=False)),
            pa.array(np.concatenate([p[4].reshape(-1) for p in parts]).astype(fdt, copy=False)),
        ], schema=self._schema)
        assert self._writer is not None
        self._writer.write_table(table, row_group_size=max(1, n))

    def commit(self, meta: dict[str, object]) -> None:
        """Store ``meta`` (JSON) in the footer, close, and rename onto the shard's name."""
        for site in list(self._pending):
            self._flush(site)
        self._wait()
        self._shutdown()
        assert self._writer is not None
        self._writer.add_key_value_metadata({META_KEY.decode(): json.dumps(meta)})
        self._writer.close()
        self._writer = None
        os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the temporary file (after an error or an interruption)."""
        try:
            self._wait()
        except Exception:  # the file is removed anyway
            pass
        self._shutdown()
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # the file is removed anyway
                pass
            self._writer = None
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)


def shard_meta(path: Path) -> dict[str, object] | None:
    """The footer metadata of a shard file, or None when it is not a readable shard."""
    try:
        md = pq.read_metadata(path).metadata or {}
        return json.loads(md[META_KEY])
    except Exception:  # a damaged file is not a finished shard
        return None


def finished_shards(out: Path, run_key: str) -> dict[int, dict[str, object]]:
    """``{shard index: metadata}`` of the shards on disk that belong to run ``run_key``.

    Raises
    ------
    InputError
        When a shard of another run is there (the folder mixes runs).
    """
    found: dict[int, dict[str, object]] = {}
    folder = out / SHARDS
    if not folder.is_dir():
        return found
    for p in sorted(folder.glob("shard-*.parquet")):
        meta = shard_meta(p)
        if meta is None:  # unreadable (e.g. truncated by a full disk): recomputed
            try:
                os.unlink(p)
            except FileNotFoundError:  # another rank removed it first
                pass
            continue
        if meta.get("run_key") != run_key:
            raise InputError(f"--out {os.fspath(out)}: shard {p.name} belongs to another run; "
                             f"use another folder, or restart to discard it")
        found[int(meta["shard"])] = meta  # type: ignore[arg-type]
    return found


def remove_temporaries(out: Path) -> None:
    """Delete half-written shards left by a killed process (hidden ``.shard-*.tmp`` files)."""
    folder = out / SHARDS
    if folder.is_dir():
        for p in folder.glob(".shard-*.tmp"):
            try:
                os.unlink(p)
            except FileNotFoundError:  # another rank removed it first
                pass


def read_manifest(out: Path) -> dict[str, object] | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{os.fspath(path)}: cannot read the manifest ({e})") from None


def write_manifest(out: Path, text: str) -> None:
    write_atomic(out / MANIFEST, lambda p: Path(p).write_text(text))


def clear(out: Path) -> None:
    """Remove a previous run's manifest and shards (only those files)."""
    for p in list((out / SHARDS).glob("shard-*.parquet")) + list((out / SHARDS).glob(".shard-*.tmp")):
        p.unlink()
    if (out / MANIFEST).exists():
        (out / MANIFEST).unlink()

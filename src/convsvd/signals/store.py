"""On-disk layout of a profile run: dense Arrow shards and a JSON manifest.

::

    OUT/manifest.json                run metadata: model hash, options, dataset, versions, layers,
                                     finished shards, per-layer statistics, skipped inputs
    OUT/shards/shard-000000.arrow    shard 0 (batches 0 … k−1): every input's signals on every site

A shard is one Arrow IPC file (uncompressed), one record batch per forward
batch, with the columns

====================  ===================================  ===========================================
``id``                int64                                the input's id in its dataset
``label``             int64                                class index, −1 when unlabelled
``s:<site>``          fixed-size list ⟨float, K⟩           the input's ``K = g·r`` aggregated signals
                                                           ``u_iᵀ(y − b)`` on that site, group-major
====================  ===================================  ===========================================

so a site is a dense ``inputs × K`` matrix: 4 bytes per (input, SVD neuron)
in float32 (2 in float16, 8 in float64) plus 16 bytes of id and label per input.

Why Arrow IPC: it writes the buffers as they are in memory (no encoding
step), so a batch costs one memory copy to the file, and a reader
memory-maps the file and takes one site's column without reading the others
or copying. Parquet encodes every value (and a list column's levels), which
is several times slower to write for dense float matrices; safetensors
needs every tensor's final shape before the first byte, so it cannot be
written batch by batch with flat memory.

Identity and integrity, in the file itself:

- the schema's metadata (key ``convsvd``) holds the shard's identity: format,
  run key, shard index, storage dtype, and per site its layer name, groups,
  neurons per group and ``σ`` of each neuron;
- a last, empty record batch carries the footer (custom metadata key
  ``convsvd-footer``): inputs, batches, id range, per-site influential counts,
  skipped inputs, and the XXH3-64 of each column's values, in batch order.

A shard is streamed into a hidden temporary file and renamed when complete,
so a ``shard-*.arrow`` file with a readable footer is finished. Influential
sets are not stored: they are derived on read from the stored signal with the
run's rule (:func:`convsvd.signals.influence.influence`), which gives the same
sets and weights as computing them at write time from the same values.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import xxhash

from convsvd._meta import _umask, write_atomic
from convsvd._typing import JsonDict
from convsvd.errors import InputError

__all__ = ["COLUMNS", "FORMAT", "MANIFEST", "SHARDS", "ShardError", "ShardWriter", "SiteInfo", "shard_path"]

FORMAT = "convsvd-signals/2"
OLD_FORMATS = ("convsvd-signals/1",)
MANIFEST = "manifest.json"
SHARDS = "shards"
SUFFIX = ".arrow"
META_KEY = b"convsvd"
FOOTER_KEY = b"convsvd-footer"
COLUMNS = ("id", "label", "layer", "group", "neuron", "sigma", "signal", "influential", "weight")
STORE_DTYPES = ("float16", "float32", "float64")
_NP = {"float16": np.float16, "float32": np.float32, "float64": np.float64}
_PA = {"float16": pa.float16(), "float32": pa.float32(), "float64": pa.float64()}


def column_of(site: str) -> str:
    """The shard column of a site's signals."""
    return f"s:{site}"


def shard_path(out: Path, index: int) -> Path:
    return out / SHARDS / f"shard-{index:06d}{SUFFIX}"


def shard_name(index: int) -> str:
    return f"{SHARDS}/shard-{index:06d}{SUFFIX}"


def index_of(path: Path) -> int | None:
    """The shard index in a shard file's name, or None."""
    stem = path.name[len("shard-"):-len(SUFFIX)] if path.name.startswith("shard-") and path.name.endswith(SUFFIX) else ""
    return int(stem) if stem.isdigit() else None


class ShardError(Exception):
    """A shard that cannot be used: missing, unreadable, damaged, or not the shard its name says."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path, self.reason = path, reason


@dataclass(frozen=True)
class SiteInfo:
    """The constant description of a site's ``K = groups · neurons_per_group`` columns."""

    layer: str
    groups: int
    neurons_per_group: int
    sigma: tuple[float, ...]

    @property
    def neurons(self) -> int:
        return self.groups * self.neurons_per_group

    def to_json(self) -> JsonDict:
        # σ as base64 of little-endian float64: exact, and 3× shorter than decimal text for thousands of neurons
        raw = np.asarray(self.sigma, dtype="<f8").tobytes()
        return dict(layer=self.layer, groups=self.groups, neurons_per_group=self.neurons_per_group,
                    sigma_f8=base64.b64encode(raw).decode())

    @classmethod
    def from_json(cls, d: dict) -> "SiteInfo":
        sigma = np.frombuffer(base64.b64decode(d["sigma_f8"]), dtype="<f8")
        return cls(str(d["layer"]), int(d["groups"]), int(d["neurons_per_group"]), tuple(sigma.tolist()))


def _footer_digest(footer: JsonDict) -> str:
    """XXH3-64 of a footer's JSON (sorted keys) without its own checksum."""
    return xxhash.xxh3_64_hexdigest(json.dumps({k: v for k, v in footer.items() if k != "footer_xxh3"},
                                               sort_keys=True).encode())


def _digest(values: Sequence[np.ndarray]) -> str:
    h = xxhash.xxh3_64()
    for v in values:
        h.update(np.ascontiguousarray(v).view(np.uint8))  # type: ignore[arg-type]  # numpy declares the buffer protocol only for Python >= 3.12
    return h.hexdigest()


class ShardWriter:
    """Streams the batches of one shard into a hidden temporary file; :meth:`commit` renames it into place.

    Each :meth:`add` is one record batch (ids, labels and every site's ``(B, K)``
    signals), encoded and written by a background thread while the next batch
    is computed, one batch at a time: the next one waits for it, and its error,
    if any, is raised there or by :meth:`commit`. Memory: two batches, whatever
    the shard size. Every column's XXH3-64 is updated as it is written.
    """

    def __init__(self, path: Path, index: int, store_dtype: str, identity: JsonDict) -> None:
        if store_dtype not in STORE_DTYPES:
            raise InputError(f"store_dtype {store_dtype!r}: expected one of {', '.join(STORE_DTYPES)}")
        self.path, self.index, self.store_dtype = path, index, store_dtype
        self.identity = identity
        self.batches: list[int] = []
        self.inputs = 0
        self.influential: dict[str, int] = {}
        self.sites: list[SiteInfo] | None = None
        self._ids: list[int] = []  # min and max id seen
        self._hash: dict[str, xxhash.xxh3_64] = {}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        self._file: pa.NativeFile | None = None
        self._writer: pa.ipc.RecordBatchFileWriter | None = None
        self._schema: pa.Schema | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._writing: concurrent.futures.Future[None] | None = None

    def _open(self, sites: list[SiteInfo]) -> None:
        self.sites = sites
        f = _PA[self.store_dtype]
        fields = [pa.field("id", pa.int64()), pa.field("label", pa.int64())]
        fields += [pa.field(column_of(s.layer), pa.list_(f, s.neurons)) for s in sites]
        meta = dict(self.identity, format=FORMAT, shard=self.index, store_dtype=self.store_dtype,
                    sites=[s.to_json() for s in sites])
        self._schema = pa.schema(fields, metadata={META_KEY: json.dumps(meta).encode()})
        self._file = pa.OSFile(self._tmp, "wb")
        self._writer = pa.ipc.new_file(self._file, self._schema)
        self._hash = {name: xxhash.xxh3_64() for name in self._schema.names}

    def add(self, ids: np.ndarray, labels: np.ndarray, signals: dict[str, np.ndarray], sites: list[SiteInfo],
            influential: dict[str, int]) -> None:
        """One batch: ``ids``, ``labels`` ``(B,)``; ``signals[site]`` ``(B, K)`` for every site of ``sites``, in order."""
        if self.sites is None:
            self._open(sites)
        elif [s.layer for s in sites] != [s.layer for s in self.sites]:
            raise InputError(f"model: called the layers {[s.layer for s in sites][:6]} on one batch and "
                             f"{[s.layer for s in self.sites][:6]} on another; profiling needs the same layers "
                             f"called on every batch")
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.size:
            self._ids = [int(ids.min()), int(ids.max())] if not self._ids else \
                [min(self._ids[0], int(ids.min())), max(self._ids[1], int(ids.max()))]
        cols = [ids, np.ascontiguousarray(labels, dtype=np.int64)]
        fdt = _NP[self.store_dtype]
        cols += [np.ascontiguousarray(signals[s.layer], dtype=fdt) for s in sites]
        for k, c in influential.items():
            self.influential[k] = self.influential.get(k, 0) + int(c)
        self.inputs += int(ids.size)
        self._wait()  # one batch in flight at most
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="convsvd-shard")
        self._writing = self._pool.submit(self._write, cols)

    def _write(self, cols: list[np.ndarray]) -> None:
        assert self._schema is not None and self._writer is not None
        arrays: list[pa.Array] = []
        for name, field, c in zip(self._schema.names, self._schema, cols):
            self._hash[name].update(c.view(np.uint8).reshape(-1))  # type: ignore[arg-type]  # numpy declares the buffer protocol only for Python >= 3.12
            if c.ndim == 1:
                arrays.append(pa.array(c))
            else:
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(c.reshape(-1)), c.shape[1]))
        self._writer.write_batch(pa.record_batch(arrays, schema=self._schema))

    def _wait(self) -> None:
        """Wait for the batch being written; raise its error, if any."""
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def commit(self, meta: JsonDict) -> JsonDict:
        """Write the footer (``meta`` plus counts and checksums), close, and rename onto the shard's name.

        Returns the footer.
        """
        self._wait()
        self._shutdown()
        if self.sites is None:  # a shard whose batches were all empty: its schema has ids and labels only
            self._open([])
        assert self._writer is not None and self._schema is not None and self._file is not None
        footer = dict(meta, shard=self.index, inputs=self.inputs, batches=self.batches, influential=self.influential,
                      id_range=self._ids or None, checksums={k: h.hexdigest() for k, h in self._hash.items()},
                      identity_xxh3=xxhash.xxh3_64_hexdigest((self._schema.metadata or {})[META_KEY]))
        footer["footer_xxh3"] = _footer_digest(footer)
        empty = pa.record_batch([pa.array([], type=f.type) for f in self._schema], schema=self._schema)
        self._writer.write_batch(empty, custom_metadata={FOOTER_KEY: json.dumps(footer).encode()})
        self._writer.close()
        self._writer = None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.chmod(self._tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(self._tmp, self.path)
        return footer

    def abort(self) -> None:
        """Drop the temporary file (after an error or an interruption)."""
        try:
            self._wait()
        except Exception:  # the file is removed anyway
            pass
        self._shutdown()
        for closing in (self._writer, self._file):
            if closing is not None:
                try:
                    closing.close()
                except Exception:  # the file is removed anyway
                    pass
        self._writer = self._file = None
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ShardHeader:
    """A shard's identity (schema metadata) and footer, read without its data."""

    path: Path
    identity: JsonDict
    footer: JsonDict

    @property
    def sites(self) -> list[SiteInfo]:
        return [SiteInfo.from_json(s) for s in self.identity.get("sites", [])]


def _reader(path: Path) -> pa.ipc.RecordBatchFileReader:
    try:
        return pa.ipc.open_file(pa.memory_map(os.fspath(path), "r"))
    except FileNotFoundError:
        raise ShardError(path, "missing") from None
    except (pa.ArrowException, OSError, ValueError) as e:
        raise ShardError(path, f"unreadable ({str(e).splitlines()[0][:80]})") from None


def read_header(path: Path) -> ShardHeader:
    """Identity and footer of a shard (a few KiB read).

    Raises
    ------
    ShardError
        Missing, unreadable, not a shard, or without a footer (not finished).
    """
    r = _reader(path)
    try:
        raw = (r.schema.metadata or {})[META_KEY]
        ident = json.loads(raw)
        n = r.num_record_batches
        foot = r.get_batch_with_custom_metadata(n - 1).custom_metadata if n else None
        footer = json.loads(foot[FOOTER_KEY]) if foot is not None else None
    except (KeyError, ValueError, TypeError, pa.ArrowException, OSError) as e:
        raise ShardError(path, f"unreadable ({type(e).__name__})") from None
    if footer is None or not isinstance(ident, dict) or not isinstance(footer, dict):
        raise ShardError(path, "unreadable (no footer)")
    if footer.get("footer_xxh3") != _footer_digest(footer) or footer.get("identity_xxh3") != xxhash.xxh3_64_hexdigest(raw):
        raise ShardError(path, "damaged (its metadata does not match its checksum)")
    return ShardHeader(path, ident, footer)


def read_columns(path: Path, columns: Sequence[str], header: ShardHeader | None = None) -> dict[str, np.ndarray]:
    """The given columns of a shard, checked against their checksums.

    A signal column comes back ``(inputs, K)`` in the stored dtype, ``id`` and ``label`` ``(inputs,)`` int64.

    Raises
    ------
    ShardError
        Unreadable, or a column whose values do not match its checksum (damaged).
    """
    header = header or read_header(path)
    sums: dict[str, str] = header.footer.get("checksums", {})
    r = _reader(path)
    out: dict[str, np.ndarray] = {}
    try:
        names = r.schema.names
        for name in columns:
            if name not in names:
                raise ShardError(path, f"has no column {name!r}")
            j = names.index(name)
            field = r.schema.field(j)
            parts = []
            for b in range(r.num_record_batches - 1):
                col = r.get_batch(b).column(j)
                if pa.types.is_fixed_size_list(field.type):
                    parts.append(col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), field.type.list_size))
                else:
                    parts.append(col.to_numpy(zero_copy_only=False))
            if _digest(parts) != sums.get(name):
                raise ShardError(path, f"damaged (the values of column {name!r} do not match its checksum)")
            if parts:
                out[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
            else:
                k = field.type.list_size if pa.types.is_fixed_size_list(field.type) else 0
                dt = field.type.value_type.to_pandas_dtype() if k else np.int64
                out[name] = np.empty((0, k) if k else 0, dtype=dt)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise ShardError(path, f"unreadable ({str(e).splitlines()[0][:80]})") from None
    return out


def verify(path: Path, header: ShardHeader | None = None) -> ShardHeader:
    """Read every column of a shard against its checksum; the header. Raises :class:`ShardError`."""
    header = header or read_header(path)
    names = ["id", "label"] + [column_of(s.layer) for s in header.sites]
    read_columns(path, names, header)
    return header


def check_identity(header: ShardHeader, run_key: str, index: int) -> None:
    """The shard belongs to run ``run_key`` and is shard ``index`` (its file name). Raises :class:`ShardError`."""
    ident = header.identity
    if ident.get("format") != FORMAT:
        raise ShardError(header.path, f"written in another format ({ident.get('format')!r}, expected {FORMAT})")
    if ident.get("run_key") != run_key:
        raise ShardError(header.path, "belongs to another run (its run key differs)")
    if ident.get("shard") != index or header.footer.get("shard") != index:
        raise ShardError(header.path, f"holds shard {ident.get('shard')}, not shard {index} (a copy of another shard?)")


def shard_files(out: Path) -> Iterator[Path]:
    folder = out / SHARDS
    if folder.is_dir():
        yield from sorted(folder.glob(f"shard-*{SUFFIX}"))


def finished_shards(out: Path, run_key: str, remove: bool = True,
                    data: bool = True) -> tuple[dict[int, JsonDict], list[str]]:
    """``({shard index: footer}, problems)`` for the shards on disk that belong to run ``run_key``.

    Every shard is verified: its identity, and with ``data`` its checksums. A damaged, unreadable or
    misplaced shard, or one of a run with other options, is removed (when
    ``remove``) so that it is recomputed, and listed in ``problems`` as
    ``"shards/NAME: reason"``.
    """
    found: dict[int, JsonDict] = {}
    problems: list[str] = []
    for p in shard_files(out):
        index = index_of(p)
        try:
            header = read_header(p)
            check_identity(header, run_key, index if index is not None else -1)
            if data:
                verify(p, header)
        except ShardError as e:
            problems.append(f"{SHARDS}/{p.name}: {e.reason}")
            if remove:
                try:
                    os.unlink(p)
                except FileNotFoundError:  # another rank removed it first
                    pass
            continue
        found[int(index)] = header.footer  # type: ignore[arg-type]
    return found, problems


def remove_temporaries(out: Path) -> None:
    """Delete half-written shards left by a killed process (hidden ``.shard-*.tmp`` files)."""
    folder = out / SHARDS
    if folder.is_dir():
        for p in folder.glob(".shard-*.tmp"):
            try:
                os.unlink(p)
            except FileNotFoundError:  # another rank removed it first
                pass


def read_manifest(out: Path) -> JsonDict | None:
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
    """Remove a previous run's manifest and shards (only those files, the old layout's too)."""
    folder = out / SHARDS
    for pattern in (f"shard-*{SUFFIX}", "shard-*.parquet", ".shard-*.tmp"):
        for p in list(folder.glob(pattern)) if folder.is_dir() else []:
            p.unlink()
    if (out / MANIFEST).exists():
        (out / MANIFEST).unlink()

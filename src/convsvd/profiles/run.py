"""A finished profile run folder, read chunk by chunk.

Element profiles of a large model do not fit in memory for hundreds of inputs (a 224×224 ResNet-18:
about 75 MiB per input). ``profile_graph(..., out=DIR, stream=True)`` writes each chunk and lets it
go; :class:`ProfileRun` then gives the dataset and class profiles and (through
:func:`convsvd.profiles.class_similarity`) the similarities by reading one chunk at a time, every
chunk's checksum verified as it is read.

>>> run = ProfileRun("runs/resnet-element")      # doctest: +SKIP
>>> run.profile().summary()                       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from convsvd._progress import progress as _progress
from convsvd._typing import PathLike
from convsvd.errors import InputError
from convsvd.profiles.profile import InputProfiles, LayerInfo, Profile, _read_meta, check_by

__all__ = ["ProfileRun"]


class ProfileRun:
    """The profiles of a finished run folder (``manifest.json`` and ``chunks/``), never all in memory.

    Parameters
    ----------
    path : path
        A folder written by :func:`convsvd.profiles.profile_graph` with ``out=``.
    progress : bool or None or callable
        Progress of each pass over the chunks (as in :func:`~convsvd.profiles.profile_graph`): element
        profiles of a large model take minutes to read back.

    Attributes
    ----------
    path : Path
    layers : tuple of LayerInfo
    neuron_type, model_hash : str
    classes : list of str or None
    options : dict
    """

    def __init__(self, path: PathLike, progress: object = None) -> None:
        self.path = Path(path)
        self.progress = progress
        meta = _read_meta(self.path / "manifest.json", "profile run")
        if not meta.get("complete"):
            raise InputError(f"{self.path}: the run is not finished ({len(meta.get('chunks', {}))} chunks done); "
                             f"run it again to resume")
        self.meta = meta
        self.layers = tuple(LayerInfo.from_json(d) for d in meta["layers"])
        self.neuron_type = str(meta["neuron_type"])
        self.model_hash = str(meta.get("model_hash", ""))
        self.classes: list[str] | None = meta.get("classes")
        self.options = dict(meta.get("options", {}))
        self._keys: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.meta.get("inputs", 0))

    def __repr__(self) -> str:
        return f"ProfileRun({str(self.path)!r}, {len(self)} inputs, {self.neuron_type} neurons)"

    @property
    def layer_names(self) -> list[str]:
        return [l.name for l in self.layers]

    def chunks(self, what: str = "reading the chunks") -> Iterator[InputProfiles]:
        """The run's chunks in input order, each read (and its checksum verified) when reached;
        ``what`` names the pass in the progress shown."""
        names = sorted(self.meta["chunks"].items())
        with _progress(len(names), what, self.progress) as bar:
            for name, sha in names:
                yield InputProfiles.read_chunk(self.path / "chunks" / name, self.meta, sha)
                bar.advance(1, name)

    def load(self) -> InputProfiles:
        """Every input's profile in memory (:meth:`InputProfiles.open`)."""
        return InputProfiles.open(self.path)

    def _key_arrays(self) -> dict[str, np.ndarray]:
        if self._keys is None:  # the small per-input arrays only: the sparse matrices are not read
            got: dict[str, list[np.ndarray]] = {k: [] for k in ("ids", "labels", "targets", "predictions")}
            for name in sorted(self.meta["chunks"]):
                try:
                    with np.load(self.path / "chunks" / name, allow_pickle=False) as z:
                        for k in got:
                            got[k].append(np.asarray(z[k], dtype=np.int64))
                except (OSError, ValueError, KeyError) as e:
                    raise InputError(f"{self.path / 'chunks' / name}: not a readable chunk ({e})") from None
            self._keys = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in got.items()}
        return self._keys

    @property
    def ids(self) -> np.ndarray:
        return self._key_arrays()["ids"]

    @property
    def labels(self) -> np.ndarray:
        return self._key_arrays()["labels"]

    @property
    def targets(self) -> np.ndarray:
        return self._key_arrays()["targets"]

    @property
    def predictions(self) -> np.ndarray:
        return self._key_arrays()["predictions"]

    def _key(self, by: str) -> np.ndarray:
        return self._key_arrays()[check_by(by)]

    def profile(self) -> Profile:
        """The dataset's summed :class:`Profile`, chunk by chunk."""
        total: Profile | None = None
        for part in self.chunks("the dataset's profile"):
            p = part.profile()
            total = p if total is None else total + p
        if total is None:
            raise InputError(f"{self.path}: the run has no chunk")
        return total

    def class_profiles(self, by: str = "labels") -> dict[int, Profile]:
        """``{class: Profile}`` summed over the inputs of each class, chunk by chunk."""
        check_by(by)
        out: dict[int, Profile] = {}
        for part in self.chunks("class profiles"):
            for c, p in part.class_profiles(by).items():
                out[c] = p if c not in out else out[c] + p
        return dict(sorted(out.items()))

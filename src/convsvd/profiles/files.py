"""The files a profile run leaves beside its chunks: the dataset profile, per-layer and per-class tables."""

from __future__ import annotations

from pathlib import Path

from convsvd._typing import PathLike
from convsvd.profiles.profile import InputProfiles, Profile
from convsvd.profiles.run import ProfileRun
from convsvd.profiles.similarity import ClassSimilarity, class_matrix, class_similarity

__all__ = ["write_outputs"]


def write_outputs(ps: InputProfiles | ProfileRun, out: PathLike, total: Profile | None = None,
                  similarity: ClassSimilarity | None = None) -> list[str]:
    """Write ``profile/`` (the summed profile), ``summary.csv``, ``class-similarity.csv`` and ``class-matrix.csv``.

    Parameters
    ----------
    ps : InputProfiles or ProfileRun
    out : path
        An existing folder (usually the run's own).
    total, similarity : optional
        ``ps.profile()`` and ``class_similarity(ps)`` when the caller has them already (element
        profiles of a large model take minutes to sum).

    Returns
    -------
    list of str
        The names written.
    """
    from convsvd._meta import write_atomic

    out = Path(out)
    total = ps.profile() if total is None else total
    total.save(out / "profile")
    written = ["profile/"]
    write_atomic(out / "summary.csv", lambda p: total.summary().to_csv(p, index=False))
    written.append("summary.csv")
    if (ps.labels >= 0).any():
        sim = (class_similarity(ps) if similarity is None else similarity).to_frame()
        write_atomic(out / "class-similarity.csv", lambda p: sim.to_csv(p, index=False))
        mat = class_matrix(ps)
        write_atomic(out / "class-matrix.csv", lambda p: mat.to_csv(p))
        written += ["class-similarity.csv", "class-matrix.csv"]
    return written

"""HIF (Hypergraph Interchange Format) JSON export and import of HyperNetX hypergraphs.

HIF is the JSON format HyperNetX, XGI and other hypergraph libraries exchange:
``{"network-type": "undirected", "metadata": {...}, "nodes": [{"node", "weight",
"attrs"}], "edges": [{"edge", "weight", "attrs"}], "incidences": [{"edge",
"node", "weight", "attrs"}]}``.

HyperNetX 2.4's own ``hnx.to_hif`` / ``hnx.from_hif`` download the HIF JSON
schema from GitHub on every call, so they fail without a network; these
functions write and read the same structure offline (ids are strings or
integers, weights numbers, every other property goes into ``attrs``), and a
file they write is read by ``hnx.from_hif`` unchanged.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from convsvd._meta import write_atomic
from convsvd._typing import PathLike
from convsvd.errors import InputError
from convsvd.hypergraph._hnx import hnx

if TYPE_CHECKING:  # pragma: no cover
    import hypernetx

__all__ = ["read_hif", "to_hif", "write_hif"]


def _plain(v: Any) -> Any:
    """A JSON value: numpy scalars to Python, NaN and infinities to None."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _uid(v: Any) -> str | int:
    v = _plain(v)
    return v if isinstance(v, (int, str)) and not isinstance(v, bool) else str(v)


def _records(frame: pd.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    """Rows of a HyperNetX property table (uid index) as HIF records: uid keys, ``weight``, ``attrs``."""
    out = []
    props = [c for c in frame.columns if c not in ("weight", "misc_properties")]
    for uid, row in zip(frame.index, frame.itertuples(index=False)):
        r = dict(zip(frame.columns, row))
        uids = uid if isinstance(uid, tuple) else (uid,)
        rec: dict[str, Any] = {k: _uid(u) for k, u in zip(keys, uids)}
        w = _plain(r.get("weight", 1))
        rec["weight"] = w if isinstance(w, (int, float)) and not isinstance(w, bool) else 1
        attrs = {str(c): _plain(r[c]) for c in props}
        misc = r.get("misc_properties")
        if isinstance(misc, dict):
            attrs.update({str(k): _plain(v) for k, v in misc.items()})
        rec["attrs"] = attrs
        out.append(rec)
    return out


def to_hif(H: "hypernetx.Hypergraph", *, metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A hypergraph as a HIF dictionary (JSON-ready), with every vertex, edge and incidence property.

    Parameters
    ----------
    H : hypernetx.Hypergraph
    metadata : mapping, optional
        Stored under ``"metadata"`` (with the hypergraph's ``name``).

    Returns
    -------
    dict
        ``network-type, metadata, nodes, edges, incidences``.

    >>> import hypernetx as hnx
    >>> to_hif(hnx.Hypergraph({"e": ["a", "b"]}))["incidences"][0]["edge"]
    'e'
    """
    meta = {str(k): _plain(v) for k, v in (metadata or {}).items()}
    if H.name is not None:
        meta.setdefault("name", _plain(H.name))
    return {
        "network-type": "undirected",
        "metadata": meta,
        "nodes": _records(H.nodes.to_dataframe, ["node"]),
        "edges": _records(H.edges.to_dataframe, ["edge"]),
        "incidences": _records(H.incidences.to_dataframe, ["edge", "node"]),
    }


def write_hif(H: "hypernetx.Hypergraph", path: PathLike, *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write :func:`to_hif` of ``H`` as JSON to ``path`` (atomically: never a half-written file)."""
    text = json.dumps(to_hif(H, metadata=metadata), allow_nan=False)
    p = Path(path)
    write_atomic(p, lambda tmp: Path(tmp).write_text(text))
    return p


def _frame(records: list[dict[str, Any]], keys: list[str]) -> pd.DataFrame:
    rows = []
    for r in records:
        attrs = r.get("attrs") or {}
        w = r.get("weight", 1)
        rows.append({**{k: r[k] for k in keys}, "weight": 1 if w is None else w,
                     **{a: (math.nan if v is None else v) for a, v in attrs.items()
                        if a not in keys and a != "weight"}})
    return pd.DataFrame(rows, columns=None if rows else keys + ["weight"])


def read_hif(source: PathLike | Mapping[str, Any]) -> "hypernetx.Hypergraph":
    """A HyperNetX hypergraph from a HIF file (or dictionary): incidences, weights and properties.

    Raises
    ------
    InputError
        The file cannot be read, is not JSON, or lacks HIF's ``incidences`` list of ``{edge, node}`` records.
    """
    name = "hif" if isinstance(source, Mapping) else os.fspath(source)
    if isinstance(source, Mapping):
        hif = dict(source)
    else:
        try:
            hif = json.loads(Path(source).read_text())
        except OSError as e:
            raise InputError(f"{name}: cannot read the HIF file ({e.strerror})") from None
        except ValueError as e:
            raise InputError(f"{name}: not a JSON file ({e})") from None
    inc = hif.get("incidences") if isinstance(hif, dict) else None
    if not isinstance(inc, list) or not all(isinstance(r, dict) and "edge" in r and "node" in r for r in inc):
        raise InputError(f"{name}: expected a HIF object with an 'incidences' list of {{edge, node}} records")
    h = hnx()
    cells = _frame(inc, ["edge", "node"])
    nodes = _frame(hif.get("nodes") or [], ["node"])
    edges = _frame(hif.get("edges") or [], ["edge"])
    meta = hif.get("metadata") or {}
    return h.Hypergraph(cells, edge_col="edge", node_col="node", cell_weight_col="weight",
                        node_properties=nodes if len(nodes) else None, edge_properties=edges if len(edges) else None,
                        name=meta.get("name"))

"""The report's section on attribution profiles: graphs of a few inputs per class, class similarity, depth, topology."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from convsvd.errors import ConvSVDError
from convsvd.report.content import Data, Figure, Heading, Note, Section, Table

if TYPE_CHECKING:  # pragma: no cover
    from convsvd.profiles import InputProfiles, Profile

__all__ = ["profiles_section", "profiles_section_for", "SECTION_ID", "SECTION_TITLE"]

SECTION_ID = "profiles"
SECTION_TITLE = "Attribution profiles"

_INTRO = ("Each input's profile starts at its predicted class and goes back through the layers: every neuron keeps "
          "the smallest set of input channels whose share of its |contribution| reaches the threshold (0.1), and "
          "passes its weight on to them. A class profile sums the profiles of its inputs. An input is assigned to "
          "the class profile whose neuron set is the most similar to its own (Jaccard, leave-one-out).")


def _class_name(ps: "InputProfiles", k: int) -> str:
    return ps.classes[k] if ps.classes is not None and 0 <= k < len(ps.classes) else str(k)


#: Most vertices of a class profile's attribution graph whose homology the report computes (its
#: distance matrix is dense, and the work of dimension 1 grows fast with it): a larger graph keeps
#: its deepest layers that fit, the same for every class shown.
TOPOLOGY_VERTICES = 600


def _topology_layers(profiles: "list[Profile]", cap: int) -> tuple[list[str] | None, str]:
    """The layers (deepest first kept) whose synapses span at most ``cap`` vertices in every profile
    (None: all of them), and a sentence saying what was left out ("" when nothing)."""
    from convsvd.profiles.topology import layer_synapses

    names = [l.name for l in profiles[0].layers if l.inputs]
    keep = 0
    spans: list[set[tuple[str, int]]] = [set() for _ in profiles]
    for k in range(len(names) - 1, -1, -1):  # add layers from the deepest while every graph fits
        grown = []
        for p, span in zip(profiles, spans):
            grown.append(span | {v for out, into, _ in layer_synapses(p, names[k]) for v in (out, into)})
        if max(len(g) for g in grown) > cap:
            break
        spans, keep = grown, keep + 1
    if keep == len(names):
        return None, ""
    kept = names[len(names) - keep:]
    if not kept:
        return [names[-1]], (f"The attribution graphs are too large for their homology here (more than {cap} "
                             f"vertices even in the last layer, {names[-1]}): the diagrams show that layer's "
                             f"synapses only.")
    return kept, (f"Homology of the synapses of the last {keep} of {len(names)} layers ({kept[0]} to {kept[-1]}): "
                  f"the whole graphs have more than {cap} vertices, the most whose dense distance matrix the report "
                  f"computes homology of.")


def profiles_section(ps: "InputProfiles | None", reason: str = "", per_class: int = 2, max_classes: int = 10,
                     topology: bool = True) -> Section:
    """The section, drawn from the profiles of a dataset (``None``: a section that says why it is missing).

    Parameters
    ----------
    ps : InputProfiles or None
    reason : str
        Why there are no profiles (when ``ps`` is None).
    per_class : int
        Inputs whose attribution graph is drawn, per class.
    max_classes : int
        Classes drawn (the first ones).
    topology : bool
        Add the persistence diagrams of the class profiles and their bottleneck distances.
    """
    if ps is None:
        return Section(SECTION_ID, SECTION_TITLE, (Note(reason or "No profiles were computed.", "missing"),),
                       status="missing")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from convsvd.profiles import class_matrix, class_similarity, diagram_distances, homology
    from convsvd.viz._common import figure_of
    from convsvd.viz.profiles import plot_class_matrix, plot_depth_accuracy, plot_persistence, plot_profile_graph

    blocks: list = []
    data: list[Data] = []
    status = "done"
    total = ps.profile()
    blocks.append(Table("profiles-summary", total.summary(),
                        f"The profile of all {len(ps)} inputs ({ps.neuron_type} neurons): per layer, the neurons "
                        "and synapses that appear in at least one input's profile."))
    labelled = ps.labels >= 0
    if not labelled.any():
        blocks.append(Note("The data have no class labels: no class profiles, similarity or accuracy.", "missing"))
        status = "partial"
    else:
        sim = class_similarity(ps)
        frame = sim.to_frame()
        fig = figure_of(plot_depth_accuracy(sim))
        blocks.append(Figure.from_matplotlib("profiles-depth", fig, "Accuracy of the nearest class profile, layer by "
                                             "layer (leave-one-out Jaccard of neuron sets).", ("profiles-depth",)))
        blocks.append(Table("profiles-depth", frame, "Nearest class profile per layer: accuracy and mean similarity "
                                                     "of an input to its own class profile."))
        mat = class_matrix(ps)
        fig = figure_of(plot_class_matrix(mat))
        blocks.append(Figure.from_matplotlib("profiles-class-matrix", fig, "Jaccard similarity of the class "
                                             "profiles' neuron sets (all layers).", ("profiles-class-matrix",)))
        data.append(Data("profiles-class-matrix", mat.reset_index(names="class"), "class × class Jaccard"))
    blocks.append(Heading("Attribution graphs of single inputs", "profiles-inputs"))
    key = np.where(labelled, ps.labels, ps.predictions)
    for k in sorted(set(key.tolist()))[:max_classes]:
        rows = np.flatnonzero(key == k)[:per_class]
        fig, axes = plt.subplots(1, len(rows), figsize=(5.5 * len(rows), 3.2), layout="constrained", squeeze=False)
        drawn = [ps[int(r)] for r in rows]  # each input's profile, built once for its figure and its numbers
        for ax, r, one in zip(axes[0], rows, drawn):
            plot_profile_graph(one, ax=ax, title=f"input {int(ps.ids[r])} (class {_class_name(ps, k)}, "
                                                 f"predicted {_class_name(ps, int(ps.predictions[r]))})")
        synapses = pd.concat([one.synapse_frame().assign(input=int(ps.ids[r])) for r, one in zip(rows, drawn)],
                             ignore_index=True)
        data.append(Data(f"profiles-graph-{k}", synapses, f"class {_class_name(ps, k)}: synapses of the inputs drawn"))
        blocks.append(Figure.from_matplotlib(f"profiles-graph-{k}", fig, f"Class {_class_name(ps, k)}: the "
                                             "attribution graph of each input, strongest path in red.",
                                             (f"profiles-graph-{k}",)))
    if topology:
        try:
            cps = ps.class_profiles("labels" if labelled.any() else "predictions")
            chosen = sorted(cps)[:4]
            layers, cut = _topology_layers([cps[k] for k in chosen], TOPOLOGY_VERTICES)
            homs = {_class_name(ps, k): homology(cps[k], length="inverse", layers=layers) for k in chosen}
            fig, axes = plt.subplots(1, len(homs), figsize=(3.4 * len(homs), 3.2), layout="constrained", squeeze=False)
            for ax, (name, h) in zip(axes[0], homs.items()):
                plot_persistence(h, ax=ax, title=f"class {name}")
            blocks.append(Heading("Topology of the class profiles", "profiles-topology"))
            if cut:
                blocks.append(Note(cut))
            data.append(Data("profiles-persistence", pd.concat([h.to_frame().assign(**{"class": name})
                                                                for name, h in homs.items()], ignore_index=True),
                             "persistence pairs of the class profiles"))
            blocks.append(Figure.from_matplotlib("profiles-persistence", fig, "Persistence diagrams (H0, H1) of the "
                                                 "class profiles' attribution graphs; edge length 1 / mean synapse "
                                                 "weight, distance the shortest path.", ("profiles-persistence",)))
            dist = diagram_distances(homs, dim=1)
            blocks.append(Table("profiles-bottleneck", dist.reset_index(names="class"),
                                "Bottleneck distance between the H1 diagrams of the class profiles."))
        except ConvSVDError as e:
            blocks.append(Note(f"No topology: {e}", "missing"))
            status = "partial"
    return Section(SECTION_ID, SECTION_TITLE, tuple(blocks), tuple(data), status, _INTRO)


def profiles_section_for(analysis: object) -> Section:
    """The section of a report's analysis (its ``profiles``, computed by the report's "attribution
    profiles" step within its budget, or the reason there are none)."""
    options = getattr(analysis, "options")
    ps = getattr(analysis, "profiles", None)
    if ps is None:
        return profiles_section(None, getattr(analysis, "profiles_reason", "") or "No attribution profiles.")
    section = profiles_section(ps, per_class=1 if options.quick else 2, max_classes=4 if options.quick else 10)
    note = getattr(analysis, "profiles_note", "")
    if note:
        section = replace(section, blocks=(Note(note, "warning"), *section.blocks))
    return section

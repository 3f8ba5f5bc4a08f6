"""Import HyperNetX on first use, leaving matplotlib's settings as they were.

HyperNetX takes about a second to import and, when its drawing module loads,
sets ``matplotlib.rcParams["figure.figsize"]``; it is imported only when a
hypergraph is built, and that setting is restored.
"""

from __future__ import annotations

from types import ModuleType

from convsvd.errors import ConvSVDError

__all__ = ["hnx"]


def hnx() -> ModuleType:
    """The ``hypernetx`` module; :class:`ConvSVDError` saying how to install it when it is missing."""
    import sys

    if "hypernetx" in sys.modules:
        return sys.modules["hypernetx"]
    import matplotlib

    size = matplotlib.rcParams["figure.figsize"]
    try:
        import hypernetx
    except ImportError:
        raise ConvSVDError("hypergraphs need the hypernetx package, a dependency of convsvd: "
                           "pip install 'hypernetx>=2.3'") from None
    finally:
        matplotlib.rcParams["figure.figsize"] = size
    return hypernetx

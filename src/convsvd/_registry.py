"""Names the command line offers as choices, in a module without heavy imports (``--help`` reads them
before torch is loaded); each is re-exported by the module that implements it."""

__all__ = ["ABLATION_BASES"]

#: Every ablation basis (:data:`convsvd.ablation.BASES`).
ABLATION_BASES: tuple[str, ...] = ("svd-top", "svd-bottom", "channel-norm", "channel-act", "random", "svd-keep")

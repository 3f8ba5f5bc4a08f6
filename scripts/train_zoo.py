"""Retrain the zoo models and write their shipped weights.

Usage::

    .venv/bin/python scripts/train_zoo.py                 # every model, into src/convsvd/zoo/weights
    .venv/bin/python scripts/train_zoo.py digits-cnn --out-dir /tmp/zoo --epochs 5

Runs are reproducible (see :mod:`convsvd.zoo.train`): rerunning with the same
seed rewrites bit-identical weight files.
"""

from __future__ import annotations

import argparse
import sys
import time

from convsvd.zoo import CONFIGS, MODELS, WEIGHTS_DIR, train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # No ``choices=``: Python < 3.12 checks an empty ``nargs="*"`` list against them.
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help=f"models to train (default: all of {', '.join(MODELS)})")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the data (default: per model, " +
                        ", ".join(f"{k}: {v.epochs}" for k, v in CONFIGS.items()) + ")")
    parser.add_argument("--seed", type=int, default=0, help="seed of init and batch order (default: 0)")
    parser.add_argument("--out-dir", default=str(WEIGHTS_DIR), help="where to write (default: the package's weights)")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}: expected one of {', '.join(MODELS)}")

    start = time.perf_counter()
    for name in args.models or list(MODELS):
        result = train(name, epochs=args.epochs, seed=args.seed, out_dir=args.out_dir, progress=not args.quiet)
        size = sum(p.stat().st_size for p in result.files)
        print(f"{name}: test accuracy {result.test_accuracy:.4f} after {result.config.epochs} epochs, "
              f"{result.seconds:.1f} s, {len(result.files)} files ({size / 1e6:.2f} MB) in {args.out_dir}")
    print(f"total {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

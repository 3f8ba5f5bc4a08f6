"""``torch.distributed`` for a run under ``torchrun``: rank, world size, barriers (gloo)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from convsvd.errors import InputError

__all__ = ["Dist", "setup"]


@dataclass(frozen=True)
class Dist:
    """This process's place in the run.

    Attributes
    ----------
    rank, world : int
        ``0, 1`` outside torchrun.
    owns_group : bool
        True when :func:`setup` created the process group (and :meth:`close` destroys it).
    """

    rank: int = 0
    world: int = 1
    owns_group: bool = False

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def all_ok(self, ok: bool) -> bool:
        """True when ``ok`` is true on every rank (an all-reduce; ``ok`` itself outside torchrun)."""
        if self.world <= 1:
            return ok
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def close(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def setup() -> Dist:
    """Join the process group when ``WORLD_SIZE > 1`` (gloo, unless the caller already created one)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise InputError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')!r}: expected an integer (set by torchrun)") from None
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1: this build of torch has no torch.distributed")
    if dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), False)
    dist.init_process_group(backend="gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), True)

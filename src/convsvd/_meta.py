"""Run metadata written beside every result, and atomic file writes."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from convsvd._typing import PathLike


def versions() -> dict[str, str]:
    import numpy
    import pandas
    import torch

    import convsvd

    return {"convsvd": convsvd.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "pandas": pandas.__version__, "python": platform.python_version()}


def run_metadata(source: str, model_hash: str, options: dict[str, object], **extra: object) -> str:
    """JSON text: source, model hash, options, versions, time."""
    meta = {
        "source": source,
        "model_hash": model_hash,
        "options": {k: (v if isinstance(v, (int, float, str, bool, type(None), list, dict)) else str(v)) for k, v in options.items()},
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }
    return json.dumps(meta, indent=2, default=str)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: PathLike, write: Callable[[str], object]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: never a half-written file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise

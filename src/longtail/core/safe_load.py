"""The only ``torch.load`` in longtail: ``weights_only=True``, so a file never runs code when loaded.

Checkpoints (:mod:`longtail.rundir.checkpoint`) and user weight files (:mod:`longtail.models.weights`)
both load through here; each words torch's errors for its own files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


def torch_load_safely(path: str | Path, map_location: str | torch.device | None = "cpu") -> Any:
    """The only ``torch.load`` in longtail: ``weights_only=True`` (tensors, plain containers and
    numpy data; nothing that runs code). Errors are torch's own; :func:`load_checkpoint` words them."""
    with torch.serialization.safe_globals(numpy_globals()):
        return torch.load(Path(path), map_location=map_location, weights_only=True)



def numpy_globals() -> list[Any]:
    """numpy array/scalar reconstructors: data only, safe to allow in ``weights_only`` loading
    (checkpoints written before format 1, and other tools' checkpoints, keep numpy RNG states)."""
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar  # type: ignore[no-redef]
    dtypes = [type(np.dtype(t)) for t in (np.bool_, np.uint8, np.int32, np.int64, np.uint32, np.float32, np.float64)]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtypes]

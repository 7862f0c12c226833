"""The provenance an evaluation records in `Results.meta`: versions, device, time and command."""
import platform
import shlex
import sys
from datetime import datetime, timezone

from fastinv import __version__


def environment_meta(device: str) -> dict:
    """Versions, device and provenance to store in `Results.meta` (creation time in UTC, command line)."""
    import numpy
    import torch
    import torchvision

    meta = {
        "fastinv": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["fastinv", *sys.argv[1:]]),
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        meta["device_name"] = torch.cuda.get_device_name(torch.device(device))
        meta["cuda"] = torch.version.cuda
    return meta

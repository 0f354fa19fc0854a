"""What names a GPU: its name, memory, compute capability, driver, CUDA and cuDNN (torch imported only to ask)."""

from __future__ import annotations

import subprocess


def available() -> tuple[bool, str]:
    """(usable, why not) without raising."""
    import torch

    if not torch.cuda.is_available():
        why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device visible"
        return False, f"CUDA not available ({why}; torch {torch.__version__})"
    return True, ""


def gpu_info() -> dict:
    """The GPU a row ran on: name, memory, compute capability, driver, CUDA, cuDNN, torch."""
    import torch

    p = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "name": p.name,
        "memory_gb": round(p.total_memory / 2**30, 1),
        "capability": [p.major, p.minor],
        "multiprocessors": p.multi_processor_count,
        "driver": driver_version(),
        "cuda": torch.version.cuda,
        "cudnn": cudnn_version(torch.backends.cudnn.version()),
        "torch": torch.__version__,
    }


def cudnn_version(v: int | None) -> str | None:
    """cuDNN's integer version as text: 91900 -> 9.19.0 (cuDNN 9), 8902 -> 8.9.2 (cuDNN 8)."""
    if not v:
        return None
    if v >= 10000:
        return f"{v // 10000}.{v % 10000 // 100}.{v % 100}"
    return f"{v // 1000}.{v % 1000 // 100}.{v % 100}"


def driver_version() -> str | None:
    """The NVIDIA driver (nvidia-smi, else /proc/driver/nvidia/version), None where neither says."""
    try:
        r = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip().splitlines()[0].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        text = open("/proc/driver/nvidia/version").read()
    except OSError:
        return None
    words = text.split()
    return next((w for w in words if w.count(".") >= 1 and w.replace(".", "").isdigit()), None)

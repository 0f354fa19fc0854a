"""Graph report per artifact: op counts, the layout/quantisation ops a conversion added, MACC counted from the
graph, and where each op ran (TFLite delegate vs CPU kernels, OpenVINO runtime precision, ORT's fused graph).
Each backend reads its own format (``Backend.bench.graph``, in its module); this module adds what is common."""

from __future__ import annotations

from collections import Counter
from pathlib import Path


def source_transposes(model, example) -> int:
    """Transposes/permutes the PyTorch forward itself calls (ShuffleNet's channel shuffle has some): the baseline.
    Counted with a TorchFunctionMode over one eager forward (milliseconds, no export)."""
    import torch
    from torch.overrides import TorchFunctionMode

    from c3ae_edge.export.deploy import DeployModule

    kinds = {
        torch.permute,
        torch.Tensor.permute,
        torch.transpose,
        torch.Tensor.transpose,
        torch.t,
        torch.Tensor.t,
        torch.swapaxes,
        torch.Tensor.swapaxes,
        torch.Tensor.mT.__get__,
        torch.Tensor.T.__get__,
    }
    count = [0]

    class Count(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func in kinds:
                count[0] += 1
            return func(*args, **(kwargs or {}))

    with torch.inference_mode(), Count():
        DeployModule(model).eval()(torch.from_numpy(example[:1]))
    return count[0]


def _added(ops: Counter, base_transposes: int | None, names: dict[str, tuple[str, ...]]) -> dict:
    """Transposes and (de)quantise ops the conversion added; ``names``: the format's op names of each kind."""
    out = {}
    for key in ("transpose", "quantize", "dequantize"):
        n = sum(ops.get(k, 0) for k in names.get(key, ()))
        out[key] = max(0, n - base_transposes) if key == "transpose" and base_transposes is not None else n
    return out


def report(backend: str, path: Path, base_transposes: int | None = None, threads: int = 1) -> dict:
    """The graph report for one artifact; {"error": ...} rather than failing the bench."""
    from c3ae_edge.export.registry import get_backend

    bench = get_backend(backend).bench
    if bench is None:
        return {}
    try:
        r = bench.graph(path, threads)
    except Exception as e:  # a report must never sink the timing rows
        return {"error": f"{type(e).__name__}: {e}"}
    r["added_by_conversion"] = _added(Counter(r["ops"]), base_transposes, bench.conversion_ops)
    r["source_transposes"] = base_transposes
    return r

"""Helpers shared by the backends: the artifact's embedded metadata, output decoding, batching."""

from __future__ import annotations

import json

import numpy as np

META_KEY = "c3ae_edge"  # the key under which every artifact embeds its metadata (JSON)


def meta_json(meta: dict) -> str:
    """Canonical JSON (sorted keys, no spaces): same metadata, same bytes."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"))


def decode_outputs(outs: dict[str, np.ndarray], meta: dict | None) -> dict[str, np.ndarray]:
    """Named outputs -> {"age": (B,), "bins": (B, 12)?}; an artifact without "age" decodes it from "bins"
    with the cascade's last layer (age = bins . w2 + b2, kept in float)."""
    res = {k: np.asarray(v, np.float32) for k, v in outs.items()}
    if "bins" not in res and "logits" in res:  # softmax in float
        z = np.exp(res["logits"] - res["logits"].max(-1, keepdims=True))
        res["bins"] = z / z.sum(-1, keepdims=True)
    if "age" not in res and "bins" in res:
        head = (meta or {}).get("decode", {})
        w2, b2 = np.asarray(head["w2"], np.float32), np.float32(head["b2"])
        res["age"] = res["bins"] @ w2 + b2
    res["age"] = res["age"].reshape(-1)
    return res


def head_weights(model) -> dict | None:
    """The cascade's W2 (12) and bias as plain lists: firmware decodes age = sum(bins * w2) + b2."""
    head = getattr(model, "head", None)
    if head is None or not hasattr(head, "w2"):
        return None
    return {
        "w2": [float(v) for v in head.w2.weight.detach().reshape(-1)],
        "b2": float(head.w2.bias.detach().reshape(-1)[0]),
    }


def batches(x: np.ndarray, size: int):
    for i in range(0, len(x), size):
        yield x[i : i + size]


def module_missing(module: str, package: str, extra: str) -> str | None:
    """A runtime's ``missing``: None when ``module`` imports, else one line naming the package and pip extra."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        return f"{package} is not installed (pip extra '{extra}')"
    return None

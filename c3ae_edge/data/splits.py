"""Seeded, age-stratified splits, saved as JSON lists of file names next to a checkpoint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from c3ae_edge.data.datasets import Sample


def stratified_split(
    samples: list[Sample], fractions: dict[str, float], seed: int = 0, bin_width: int = 5
) -> dict[str, list[int]]:
    """Indices per split, each age bin shared out in the given fractions (the last split takes the rest)."""
    rng = np.random.default_rng(seed)
    names = list(fractions)
    out: dict[str, list[int]] = {n: [] for n in names}
    ages = np.array([s.age for s in samples])
    for b in np.unique((ages // bin_width).astype(int)):
        idx = np.flatnonzero((ages // bin_width).astype(int) == b)
        rng.shuffle(idx)
        start = 0
        for n in names[:-1]:
            k = int(round(fractions[n] * len(idx)))
            out[n].extend(idx[start : start + k].tolist())
            start += k
        out[names[-1]].extend(idx[start:].tolist())
    return {n: sorted(v) for n, v in out.items()}


def files_hash(files: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()


def save_split(path: str | Path, samples: list[Sample], split: dict[str, list[int]], seed: int, source: str) -> None:
    doc = {"seed": seed, "source": source, "splits": {n: [samples[i].key for i in idx] for n, idx in split.items()}}
    doc["sha256"] = {n: files_hash(v) for n, v in doc["splits"].items()}
    from c3ae_edge.atomic import write_atomic

    write_atomic(path, json.dumps(doc, indent=1))


def load_split(path: str | Path, samples: list[Sample]) -> dict[str, list[int]]:
    """Map a saved split back onto ``samples`` by file name; a malformed file or a face in two splits is one
    DataError."""
    from c3ae_edge.errors import DataError

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such split file") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: not a split JSON file ({type(e).__name__})") from None
    splits = doc.get("splits") if isinstance(doc, dict) else None
    if not isinstance(splits, dict) or not all(
        isinstance(n, str) and isinstance(v, list) and all(isinstance(k, str) for k in v) for n, v in splits.items()
    ):
        raise DataError(f"{path}: not a split file (needs 'splits': {{name: [file, ...]}})")
    owner: dict[str, str] = {}
    for n, keys in splits.items():
        for k in keys:
            if owner.setdefault(k, n) != n:
                raise DataError(f"{path}: {k!r} is in both the {owner[k]} and {n} splits")
    pos = {s.key: i for i, s in enumerate(samples)}
    return {n: [pos[k] for k in dict.fromkeys(keys) if k in pos] for n, keys in splits.items()}

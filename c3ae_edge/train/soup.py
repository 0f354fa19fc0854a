"""Greedy weight soup: average checkpoints of one model that share a split, keeping an ingredient only if it lowers
validation MAE (Wortsman et al., "Model soups", 2022). The test split is not read.

    c3ae-edge weights soup runs/c3ae_full_soup runs/c3ae_full_r3/best.pt runs/c3ae_full_r4b/best.pt [...]

``--refit-w2`` then re-fits the cascade's last layer on the clean train crops (``train.refit_age_layer``) and keeps
the re-fit only if it lowers validation MAE too.

Writes OUT/best.pt, OUT/split.json and OUT/config.json (``soup``: the ingredients kept, ``init``: the last of them, so
``c3ae-edge weights release`` follows the training cycles behind it) and logs each candidate's validation MAE.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from c3ae_edge.data import load_dataset, load_split
from c3ae_edge.data.crops import CropSpec
from c3ae_edge.data.facedata import FaceData
from c3ae_edge.errors import DataError, UsageError
from c3ae_edge.models import create_model
from c3ae_edge.train.loop import evaluate_mae, refit_age_layer
from c3ae_edge.weights import read_checkpoint, save_weights, split_file_for


def average(states: list[dict]) -> dict:
    """Uniform average of float tensors (weights and BN statistics); integer buffers from the first state."""
    return {
        k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v.clone()
        for k, v in states[0].items()
    }


def greedy_soup(
    states: dict[Path, dict], score, log: Callable[[str], None] = print
) -> tuple[list[Path], float, dict[Path, float]]:
    """Rank by ``score`` alone, then add each in that order while the average scores lower."""
    alone = {p: score(s) for p, s in states.items()}
    order = sorted(states, key=alone.get)
    kept, best = [order[0]], alone[order[0]]
    for p in order[1:]:
        s = score(average([states[q] for q in kept + [p]]))
        log(f"  + {p}: val MAE {s:.4f} (soup so far {best:.4f})")
        if s < best:
            kept, best = kept + [p], s
    return kept, best, alone


def run_config(ck_path: Path, ck: dict) -> dict:
    """The training config behind a checkpoint: its run's config.json, else the recipe in its metadata (shipped)."""
    f = ck_path.parent / "config.json"
    if f.is_file():
        try:
            return json.loads(f.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{f}: not a training config ({type(e).__name__})") from None
    return dict((ck.get("meta") or {}).get("recipe") or {})


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"{out}: folder is not empty (pass --force to replace its soup files)")


def make_soup(
    out: Path,
    weights: list[Path],
    data: str | None = None,
    refit_w2: bool = False,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Greedy soup of ``weights`` scored on their recorded split's validation faces -> the soup's metadata.
    Every input is checked before any evaluation; OUT gets its files only when the whole soup is done."""
    _check_out(out, force)
    if len(set(weights)) < 2:
        raise UsageError("a soup needs at least two different checkpoints")
    cks = [read_checkpoint(p) for p in weights]
    split_files = [split_file_for(p, ck) for p, ck in zip(weights, cks)]
    if len({ck["model"] for ck in cks}) != 1:
        raise DataError("the checkpoints are of different models: " + ", ".join(sorted({ck["model"] for ck in cks})))
    missing = [str(p) for p, f in zip(weights, split_files) if f is None]
    if missing:
        raise DataError(f"{missing[0]}: no recorded split beside it (split.json or the file its metadata names)")
    if len({f.read_bytes() for f in split_files}) != 1:
        raise DataError("the checkpoints were trained on different splits; a soup needs one split")
    cfgs = {p: run_config(p, ck) for p, ck in zip(weights, cks)}
    data = data or cfgs[weights[0]].get("data") or (cks[0].get("meta") or {}).get("data")
    if not data:
        raise UsageError(f"{weights[0]}: no dataset recorded with it; pass --data KIND:PATH")
    samples = load_dataset(data)
    split = load_split(split_files[0], samples)
    val = split.get("val") or []
    if not val:
        raise DataError(f"{split_files[0]}: no validation faces of {data} in this split")
    spec = CropSpec.from_dict(cks[0]["crop_spec"])
    model = create_model(cks[0]["model"])
    faces = FaceData([samples[i] for i in val], spec)

    def score(state: dict) -> float:
        model.load_state_dict(state)
        return evaluate_mae(model, faces, list(range(len(val))))[0]

    states = {p: ck["state_dict"] for p, ck in zip(weights, cks)}
    kept, best, alone = greedy_soup(states, score, log)
    for p, s in sorted(alone.items(), key=lambda t: t[1]):
        log(f"{s:.4f}  {p}")
    log(f"soup of {len(kept)}: val MAE {best:.4f}")
    state = average([states[p] for p in kept])
    meta = {
        "epoch": None,
        "val_mae": best,
        "soup": [str(p) for p in kept],
        "val_alone": {str(p): s for p, s in alone.items()},
    }
    if refit_w2:
        state, meta = _refit(model, state, meta, samples, split["train"], spec, score, log)
    cfg = cfgs[kept[-1]] | {"out": str(out), "soup": meta["soup"], "init": str(kept[-1])}
    _write(out, cks[0]["model"], state, spec, meta, split_files[0], cfg)
    return meta


def _refit(model, state: dict, meta: dict, samples, train: list[int], spec: CropSpec, score, log) -> tuple[dict, dict]:
    """Re-fit W2 on the clean train crops; keep it only if validation MAE drops."""
    best = meta["val_mae"]
    model.load_state_dict(state)
    fit = refit_age_layer(model, FaceData([samples[i] for i in train], spec), range(len(train)))
    after = score(model.state_dict())
    fit |= {"val_before": best, "val_after": after, "kept": after < best}
    log(
        f"W2 re-fit on {fit['faces']} clean train faces: train L1 {fit['train_l1_before']:.4f} -> "
        f"{fit['train_l1_after']:.4f}, val MAE {best:.4f} -> {after:.4f} ({'kept' if fit['kept'] else 'dropped'})"
    )
    if fit["kept"]:
        state, meta["val_mae"] = {k: v.clone() for k, v in model.state_dict().items()}, after
    meta["w2_refit"] = fit
    return state, meta


def _write(out: Path, model_name: str, state: dict, spec: CropSpec, meta: dict, split_file: Path, cfg: dict) -> None:
    """All four files into a temporary folder beside OUT, then moved in: nothing half-written on an error."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_weights(tmp / "best.pt", model_name, state, spec, meta)
        shutil.copy(split_file, tmp / "split.json")
        (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
        (tmp / "history.json").write_text("[]")
        out.mkdir(exist_ok=True)
        for f in ("best.pt", "split.json", "config.json", "history.json"):
            os.replace(tmp / f, out / f)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

"""Greedy weight soup: average checkpoints of one model that share a split, keeping an ingredient only if it lowers
validation MAE (Wortsman et al., "Model soups", 2022). The test split is not read.

    python c3ae_edge/train/soup.py runs/c3ae_full_soup runs/c3ae_full_r3/best.pt runs/c3ae_full_r4b/best.pt [...]

``--refit-w2`` then re-fits the cascade's last layer on the clean train crops (``train.refit_age_layer``) and keeps
the re-fit only if it lowers validation MAE too.

Writes OUT/best.pt, OUT/split.json and OUT/config.json (``soup``: the ingredients kept, ``init``: the last of them, so
``release_weights.py`` follows the training cycles behind it) and prints each candidate's validation MAE.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from c3ae_edge.data import load_dataset, load_split  # noqa: E402
from c3ae_edge.data.crops import CropSpec  # noqa: E402
from c3ae_edge.data.facedata import FaceData  # noqa: E402
from c3ae_edge.errors import C3AEError  # noqa: E402
from c3ae_edge.models import create_model  # noqa: E402
from c3ae_edge.train.loop import evaluate_mae, refit_age_layer  # noqa: E402
from c3ae_edge.weights import read_checkpoint, save_weights, split_file_for  # noqa: E402


def average(states: list[dict]) -> dict:
    """Uniform average of float tensors (weights and BN statistics); integer buffers from the first state."""
    return {k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v.clone()
            for k, v in states[0].items()}


def greedy_soup(states: dict[Path, dict], score) -> tuple[list[Path], float, dict[Path, float]]:
    """Rank by ``score`` alone, then add each in that order while the average scores lower."""
    alone = {p: score(s) for p, s in states.items()}
    order = sorted(states, key=alone.get)
    kept, best = [order[0]], alone[order[0]]
    for p in order[1:]:
        s = score(average([states[q] for q in kept + [p]]))
        print(f"  + {p}: val MAE {s:.4f} (soup so far {best:.4f})", flush=True)
        if s < best:
            kept, best = kept + [p], s
    return kept, best, alone


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("weights", type=Path, nargs="+", help="checkpoints of one model, trained on one recorded split")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--refit-w2", action="store_true", help="then re-fit W2 on the clean train crops; keep it if val MAE drops")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cks = [read_checkpoint(p) for p in a.weights]
    split_files = [split_file_for(p, ck) for p, ck in zip(a.weights, cks)]
    models = {ck["model"] for ck in cks}
    splits = {f.read_bytes() if f else None for f in split_files}
    if len(models) != 1 or len(splits) != 1 or None in splits:
        sys.exit("soup: the checkpoints must be of one model and carry one recorded split")
    split_path = split_files[0]
    cfg = json.loads((a.weights[0].parent / "config.json").read_text())
    samples = load_dataset(cfg["data"])
    split = load_split(split_path, samples)
    val = split["val"]
    spec = CropSpec.from_dict(cks[0]["crop_spec"])
    model = create_model(cks[0]["model"])
    data = FaceData([samples[i] for i in val], spec)

    def score(state: dict) -> float:
        model.load_state_dict(state)
        return evaluate_mae(model, data, list(range(len(val))))[0]

    states = {p: ck["state_dict"] for p, ck in zip(a.weights, cks)}
    kept, best, alone = greedy_soup(states, score)
    for p, s in sorted(alone.items(), key=lambda t: t[1]):
        print(f"{s:.4f}  {p}")
    print(f"soup of {len(kept)}: val MAE {best:.4f}")
    state = average([states[p] for p in kept])
    meta = {"epoch": None, "val_mae": best, "soup": [str(p) for p in kept], "val_alone": {str(p): s for p, s in alone.items()}}
    if a.refit_w2:
        model.load_state_dict(state)
        train = split["train"]
        fit = refit_age_layer(model, FaceData([samples[i] for i in train], spec), range(len(train)))
        after = score(model.state_dict())
        fit |= {"val_before": best, "val_after": after, "kept": after < best}
        print(f"W2 re-fit on {fit['faces']} clean train faces: train L1 {fit['train_l1_before']:.4f} -> {fit['train_l1_after']:.4f}, "
              f"val MAE {best:.4f} -> {after:.4f} ({'kept' if fit['kept'] else 'dropped'})")
        if fit["kept"]:
            state, meta["val_mae"] = {k: v.clone() for k, v in model.state_dict().items()}, after
        meta["w2_refit"] = fit
    a.out.mkdir(parents=True, exist_ok=True)
    save_weights(a.out / "best.pt", cks[0]["model"], state, spec, meta)
    shutil.copy(split_path, a.out / "split.json")
    last_cfg = json.loads((kept[-1].parent / "config.json").read_text())
    (a.out / "config.json").write_text(json.dumps(last_cfg | {"out": str(a.out), "soup": [str(p) for p in kept], "init": str(kept[-1])}, indent=1))
    (a.out / "history.json").write_text("[]")


if __name__ == "__main__":
    try:
        main()
    except C3AEError as e:
        sys.exit(f"soup: {e}")

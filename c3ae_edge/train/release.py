"""Ship a trained run as default weights: copy best.pt + split, evaluate, and regenerate MODEL_CARD.md.

Every number in the card is computed here from the run and from fresh evaluations; nothing is typed in.
    c3ae-edge weights release runs/c3ae_full --model c3ae_full [--fgnet-repeats 10 --fgnet-epochs 15]
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import torch

from c3ae_edge.data.crops import CropSpec
from c3ae_edge.errors import DataError
from c3ae_edge.train.evaluate import evaluate, fgnet_protocol
from c3ae_edge.weights import WEIGHTS_DIR, read_checkpoint, save_weights, sha256_file


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cycles(run: Path) -> list[dict]:
    """The runs behind ``run``, oldest first: the runs it was warm-started from (``--init``) and, for a soup
    (``c3ae-edge weights soup``, which trains nothing; listed with its ``soup`` ingredients), the runs of every
    ingredient kept. DataError names a run folder that is missing or malformed."""
    out: list[dict] = []
    seen: set[Path] = set()

    def visit(run: Path) -> None:
        if run.resolve() in seen:
            return
        seen.add(run.resolve())
        if not (run / "config.json").is_file():
            raise DataError(
                f"{run}: not a training run folder (no config.json); point the init of the run after it "
                "at the run it came from"
            )
        try:
            cfg = json.loads((run / "config.json").read_text())
            history = json.loads((run / "history.json").read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise DataError(f"{run}: unreadable config.json or history.json ({type(e).__name__})") from None
        for ingredient in cfg.get("soup") or []:
            visit(Path(ingredient).parent)
        if cfg.get("init"):
            visit(Path(cfg["init"]).parent)
        out.append(
            {
                "run": run.name,
                "recipe": cfg,
                "epochs_run": len(history),
                "history": history,
                "train_seconds": round(sum(h["seconds"] for h in history), 1),
            }
            | ({"soup": cfg["soup"]} if cfg.get("soup") else {})
        )

    visit(run)
    return out if not out[-1].get("soup") else out[:-1]  # the shipped soup itself is described on its own


def ship_split(split: Path, kind: str) -> str:
    """Copy a run's split beside the weights under a content-addressed name, so models trained on one split share one
    file."""
    name = f"{kind}-{sha256_file(split)[:12]}.split.json"
    if not (WEIGHTS_DIR / name).is_file():
        shutil.copy(split, WEIGHTS_DIR / name)
    return name


def prune_splits() -> None:
    """Drop shipped split files that no shipped weights name."""
    used = {read_checkpoint(p)["meta"].get("split_file") for p in WEIGHTS_DIR.glob("*.pt")}
    for f in WEIGHTS_DIR.glob("*.split.json"):
        if f.name not in used:
            f.unlink()


def release(run: Path, model: str, data: str, fgnet: str, repeats: int, epochs: int) -> dict:
    if not run.is_dir():
        raise DataError(f"{run}: no such training run folder")
    ck = read_checkpoint(run / "best.pt")
    if ck["model"] != model:
        raise DataError(f"{run / 'best.pt'}: holds {ck['model']} weights, not --model {model}")
    chain = cycles(run)
    history = [h for c in chain for h in c["history"]]
    cfg = chain[-1]["recipe"]
    dst = WEIGHTS_DIR / f"{model}.pt"
    meta = {
        "epoch": ck["meta"].get("epoch"),
        "val_mae": ck["meta"].get("val_mae"),
        "data": cfg["data"],
        "recipe": cfg,
        "cycles": [
            {k: c[k] for k in ("run", "recipe", "epochs_run", "train_seconds", "soup") if k in c} for c in chain
        ],
        "train_seconds": round(sum(h["seconds"] for h in history), 1),
        "epochs_run": len(history),
        "hardware": f"{cpu_name()}, {torch.get_num_threads()} threads, CPU only",
        "torch": str(torch.__version__),
    }
    if ck["meta"].get("soup"):
        meta["soup"] = {p: ck["meta"]["val_alone"][p] for p in ck["meta"]["soup"]}
    if ck["meta"].get("w2_refit"):
        meta["w2_refit"] = ck["meta"]["w2_refit"]
    meta["split_file"] = ship_split(run / "split.json", cfg["data"].split(":", 1)[0])
    save_weights(dst, model, ck["state_dict"], CropSpec.from_dict(ck["crop_spec"]), meta)
    prune_splits()
    card = {
        "model": model,
        "weights_file": dst.name,
        "weights_sha256": sha256_file(dst),
        "train": meta,
        "history": [{k: h[k] for k in ("epoch", "train_mae", "val_mae", "seconds")} for h in history],
    }
    card["utkface_test"] = evaluate(str(dst), data, split="test")
    card["utkface_val"] = evaluate(str(dst), data, split="val")
    card["fgnet_zero_shot"] = evaluate(str(dst), fgnet)
    if repeats:
        card["fgnet_paper"] = fgnet_protocol(str(dst), fgnet, "fgnet-paper", repeats=repeats, epochs=epochs)
    (WEIGHTS_DIR / f"{model}.card.json").write_text(json.dumps(card, indent=1))
    return card


def _in_run(path: str) -> str:
    """``runs/c3ae_full_r3/best.pt`` -> ``c3ae_full_r3/best.pt``: a checkpoint named by its run."""
    return "/".join(Path(path).parts[-2:])


_HEAD = (
    "# Model card: c3ae-edge default weights",
    "",
    "Generated by `c3ae-edge weights release` from the training "
    "runs and fresh evaluations; every figure below is computed.",
    "",
    "## Data and its terms",
    "- Trained on UTKFace (the copy in `../shared/data/utkface`: 21,707 aligned, cropped 200x200 faces, ages 1-116).",
    "  **UTKFace is published for non-commercial research purposes "
    "only**; the images' copyright stays with their owners.",
    "  These weights are derived from it and inherit that restriction: do not use them commercially.",
    "- FG-NET (1,002 scanned photos, 82 people) is used for evaluation only (its protocol fine-tunes copies; the "
    "shipped weights never see it); research use.",
    "- Split: seeded (seed 0), age-stratified (5-year bins) 80/10/10 train/val/test, recorded file by file in",
    "  a split file beside the weights (named in the weights' metadata, shared by models trained on the same split).",
    "  Validation chose every epoch, soup ingredient and re-fit; "
    "`train` prints each run's test MAE when it ends, but no",
    "  choice was made on it.",
    "",
    "## Preprocessing (shared by training, predict, calibration and every export)",
    "Face box in the OpenCV Haar cascade's convention; three nested square crops at 1.2, 0.9 and 0.6 x the box side",
    "(c3ae_full) or one at 1.0 (c3ae_plain), edge-padded, area-resized to 64x64, RGB, (pixel/255 - 0.5)/0.5.",
    "",
)
_LIMITS = (
    "## Limits",
    "- Ages above 110 fall into the last bin; UTKFace has few faces over 90 and the per-decade table shows the cost.",
    "- Trained on aligned, frontal web photos: expect larger errors "
    "on profile faces, poor light and old scanned photos (FG-NET).",
    "- Apparent age from a face; not for decisions about people.",
)


def render() -> str:
    """MODEL_CARD.md from the shipped ``*.card.json`` files: the data's terms, then one section per model."""
    cards = [json.loads(p.read_text()) for p in sorted(WEIGHTS_DIR.glob("*.card.json"))]
    out = list(_HEAD)
    for c in cards:
        out += _model_lines(c)
    out += _LIMITS
    return "\n".join(out) + "\n"


def _model_lines(c: dict) -> list[str]:
    """One model's section: its file, how it was trained, what ships, and its evaluations."""
    out = [f"## {c['model']}", f"- File `{c['weights_file']}`, sha256 `{c['weights_sha256'][:16]}...`."]
    out += _cycle_lines(c["train"]["cycles"])
    out += _shipped_lines(c["train"])
    out += _result_lines(c)
    out.append("")
    return out


def _cycle_lines(chain: list[dict]) -> list[str]:
    """A line per training cycle (its recipe) or soup (its ingredients), oldest first."""
    out = []
    trained = [cy for cy in chain if not cy.get("soup")]
    for cy in chain:
        q = cy["recipe"]
        if cy.get("soup"):
            out.append(
                f"- Soup `{cy['run']}` (`c3ae-edge weights soup`): the uniform average of "
                + ", ".join(f"`{_in_run(p)}`" for p in cy["soup"])
                + "."
            )
            continue
        k = trained.index(cy)
        how = (
            [f"`{cy['run']}`"]
            + ([f"warm restart from `{_in_run(q['init'])}`"] if q.get("init") else [])
            + ([f"seed {q['seed']}"] if q.get("seed") else [])
            + ([f"{q['threads']} thread{'s' if q['threads'] > 1 else ''}"] if q.get("threads") else [])
        )
        lead = "Recipe" if len(trained) == 1 else f"Cycle {k + 1} ({', '.join(how)})"
        out.append(
            f"- {lead}: AdamW lr {q['lr']}, batch {q['batch_size']}, {q['epochs']} epochs ({cy['epochs_run']} "
            f"run), {q['schedule']} schedule with {q['warmup_epochs']} warm-up epoch, weight decay "
            f"{q['weight_decay']}, dropout {q['dropout']}, alpha {q['alpha']}, lambda(W1 L1) {q['l1_w1']}, EMA "
            f"{q['ema']}, box jitter {q['jitter']}, random erasing p {q['erase_p']}, flips, colour/grey jitter."
        )
    return out


def _shipped_lines(tr: dict) -> list[str]:
    """What ships: the greedy soup (and its W2 re-fit, if kept), or the best epoch."""
    if not tr.get("soup"):
        last = " of the last cycle" if len(tr["cycles"]) > 1 else ""
        return [f"- Best epoch {tr['epoch'] + 1}{last} by validation MAE."]
    parts = ", ".join(f"`{_in_run(p)}` ({v:.3f})" for p, v in tr["soup"].items())
    refit = tr.get("w2_refit") or {}
    out = [
        f"- Shipped weights: a greedy soup (`c3ae-edge weights soup`: the uniform average of {parts}, each "
        "kept only because it lowered validation MAE) with validation MAE "
        f"{refit.get('val_before', tr['val_mae']):.3f}."
    ]
    if refit.get("kept"):
        out.append(
            "- Then the cascade's last layer (W2: 12 bin weights and a bias) was re-fit by L1 on the "
            f"{refit['faces']} clean, un-augmented train crops with the rest frozen (`--refit-w2`; training "
            f"had fit it on augmented crops): train L1 {refit['train_l1_before']:.3f} -> "
            f"{refit['train_l1_after']:.3f}, validation MAE {refit['val_before']:.3f} -> "
            f"{refit['val_after']:.3f}."
        )
    return out


def _result_lines(c: dict) -> list[str]:
    """Training time, the UTKFace test split per decade, and FG-NET zero-shot and under the paper's protocol."""
    t, tr = c["utkface_test"], c["train"]
    out = [
        f"- Training time: {tr['train_seconds'] / 60:.0f} min on {tr['hardware']} (torch {tr['torch']}, "
        f"{'torch.compile' if tr['recipe']['compile'] else 'eager'}).",
        f"- **UTKFace test split: MAE {t['mae']:.2f} years** over {t['n']} faces (median abs. error "
        f"{t['median_ae']:.2f}, CS(5) {100 * t['cs5']:.1f}%); validation MAE {c['utkface_val']['mae']:.2f}.",
        "",
        "| ages | faces | MAE |",
        "|---|---|---|",
        *[f"| {k} | {v['n']} | {v['mae']:.2f} |" for k, v in t["per_decade"].items()],
        "",
        f"- FG-NET, no fine-tuning (landmark boxes, all {c['fgnet_zero_shot']['n']} photos): MAE "
        f"{c['fgnet_zero_shot']['mae']:.2f}.",
    ]
    if "fgnet_paper" in c:
        f = c["fgnet_paper"]
        out.append(
            f"- FG-NET, the paper's protocol ({f['folds']} x 30 random test photos, fine-tuned {f['epochs']} "
            f"epochs on the rest from these weights): MAE {f['mae_mean']:.2f} ± {f['mae_std']:.2f}. The paper's: "
            "4.09 ± 0.19 from scratch, 2.95 ± 0.17 pre-trained on IMDB-WIKI (reference values, not ours)."
        )
    return out

"""MAE reports (overall and per decade) and the FG-NET protocols (paper: 30 random test faces x 10; LOPO)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from c3ae_edge.data import Sample, load_dataset, load_split
from c3ae_edge.data.facedata import FaceData
from c3ae_edge.errors import DataError, UsageError


def predict_samples(model, spec, samples: list[Sample], chunk: int = 512) -> np.ndarray:
    """Ages for ``samples`` through the model's CropSpec, decoding ``chunk`` images at a time."""
    out = []
    model.eval()
    with torch.no_grad():
        for s in range(0, len(samples), chunk):
            data = FaceData(samples[s : s + chunk], spec)
            for b in range(0, len(data), 256):
                x, _ = data.batch(list(range(b, min(b + 256, len(data)))))
                out.append(model(x).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def mae_report(pred: np.ndarray, ages: np.ndarray) -> dict:
    err = np.abs(pred - ages)
    decades = {}
    for d in range(0, 120, 10):
        m = (ages >= d) & (ages < d + 10)
        if m.any():
            decades[f"{d}-{d + 9}"] = {"n": int(m.sum()), "mae": round(float(err[m].mean()), 3)}
    return {
        "n": int(len(err)),
        "mae": round(float(err.mean()), 3),
        "median_ae": round(float(np.median(err)), 3),
        "cs5": round(float((err <= 5).mean()), 4),
        "per_decade": decades,
    }


PROTOCOLS = ("fgnet-paper", "lopo")
SPLITS = ("all", "train", "val", "test")


def check_args(
    split: str,
    protocol: str | None,
    repeats: int,
    folds: int | None,
    epochs: int,
    limit: int | None,
    json_out: Path | None,
) -> None:
    """Every argument of ``evaluate`` checked before any face is read."""
    if split not in SPLITS:
        raise UsageError(f"--split {split!r}: use one of {', '.join(SPLITS)}")
    if protocol is not None and protocol not in PROTOCOLS:
        raise UsageError(f"--protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    for name, v, lo in (
        ("--repeats", repeats, 1),
        ("--folds", folds, 1),
        ("--epochs", epochs, 0),
        ("--limit", limit, 1),
    ):
        if v is not None and v < lo:
            raise UsageError(f"{name} {v} must be >= {lo}")
    if json_out is not None and str(json_out) != "-":
        if json_out.is_dir():
            raise UsageError(f"--json {json_out}: is a folder; give a file name")
        if not json_out.resolve().parent.is_dir():
            raise UsageError(f"--json {json_out}: folder {json_out.parent} does not exist")


def finite(pred: np.ndarray, weights: str) -> np.ndarray:
    """Ages must be numbers: NaN/Inf from overflowing weights is an error, not a report."""
    if not np.isfinite(pred).all():
        raise DataError(
            f"{weights}: the model gives non-finite ages ({int((~np.isfinite(pred)).sum())} of {len(pred)} faces): the "
            "weights overflow"
        )
    return pred


def select_split(samples: list[Sample], split: str, split_file: str | Path | None) -> list[Sample]:
    if split == "all":
        return samples
    if split_file and not Path(split_file).is_file():
        raise UsageError(f"--split-file {split_file}: no such split file")
    if not split_file:
        raise UsageError(f"--split {split}: no split file recorded with these weights; use --split all or --split-file")
    idx = load_split(split_file, samples)
    if split not in idx:
        raise UsageError(f"--split {split}: the split file has {', '.join(idx)}")
    if not idx[split]:
        raise DataError(f"--split {split}: none of this split's files are in the data given")
    return [samples[i] for i in idx[split]]


def evaluate(
    weights: str | None,
    data: str,
    model_name: str | None = None,
    split: str = "all",
    split_file: str | None = None,
    limit: int | None = None,
) -> dict:
    from c3ae_edge.weights import load_model, sha256_file, split_file_for

    model, spec, ck = load_model(weights, model_name)
    samples = load_dataset(data)
    if split_file is None and split != "all":
        split_file = split_file_for(ck.path, ck)
    samples = select_split(samples, split, split_file)
    if limit:
        samples = samples[:limit]
    t0 = time.time()
    pred = finite(predict_samples(model, spec, samples), ck.path)
    ages = np.array([s.age for s in samples], np.float32)
    rep = mae_report(pred, ages)
    rep.update(
        {
            "model": ck.model,
            "weights": ck.path,
            "weights_sha256": sha256_file(ck.path),
            "data": data,
            "split": split,
            "seconds": round(time.time() - t0, 1),
        }
    )
    return rep


def fgnet_protocol(
    weights: str | None,
    data: str,
    protocol: str = "fgnet-paper",
    repeats: int = 10,
    test_size: int = 30,
    epochs: int = 15,
    lr: float = 1e-3,
    seed: int = 0,
    folds: int | None = None,
    from_scratch: bool = False,
    log=print,
) -> dict:
    """Fine-tune the given weights (or a fresh model) on FG-NET minus the test faces and report MAE on them.

    fgnet-paper: ``repeats`` x (``test_size`` random test images, the rest train), mean and std (Table 6).
    lopo: leave one person out, one fold per subject (``folds`` limits the count for a quick run).
    """
    from c3ae_edge.weights import load_model

    base, spec, ck = load_model(weights, None)
    samples = load_dataset(data)
    fd = FaceData(samples, spec)
    splits = protocol_splits(samples, protocol, repeats, test_size, folds, np.random.default_rng(seed))
    maes, errs = [], []
    t0 = time.time()
    for k, test in enumerate(splits):
        model = _finetuned(base if not from_scratch else None, ck.model, fd, test, epochs, lr, seed + k)
        e = _abs_errors(model, fd, test, ck.path)
        maes.append(float(e.mean()))
        errs.append(e)
        log(f"{protocol} fold {k + 1}/{len(splits)}: MAE {maes[-1]:.2f} on {len(test)} faces")
    return {
        "protocol": protocol,
        "folds": len(splits),
        "test_size": test_size if protocol == "fgnet-paper" else None,
        "epochs": epochs,
        "from_scratch": from_scratch,
        "mae_mean": round(float(np.mean(maes)), 3),
        "mae_std": round(float(np.std(maes)), 3),
        "mae_pooled": round(float(np.concatenate(errs).mean()), 3),
        "fold_mae": [round(m, 3) for m in maes],
        "model": ck.model,
        "weights": ck.path,
        "seconds": round(time.time() - t0, 1),
    }


def protocol_splits(
    samples: list[Sample], protocol: str, repeats: int, test_size: int, folds: int | None, rng: np.random.Generator
) -> list[np.ndarray]:
    """The test indices of each fold: ``repeats`` random sets of ``test_size`` (fgnet-paper) or one subject each
    (lopo, the first ``folds`` subjects)."""
    if protocol == "fgnet-paper":
        return [rng.permutation(len(samples))[:test_size] for _ in range(repeats)]
    if protocol != "lopo":
        raise UsageError(f"unknown protocol {protocol!r}; use fgnet-paper or lopo")
    subjects = sorted({s.subject for s in samples if s.subject is not None})
    if not subjects:
        raise DataError("lopo needs subject ids (FG-NET layout)")
    return [
        np.array([i for i, s in enumerate(samples) if s.subject == subj]) for subj in subjects[: folds or len(subjects)]
    ]


def _finetuned(base, model_name: str, fd: FaceData, test: np.ndarray, epochs: int, lr: float, seed: int):
    """A fresh ``model_name`` (starting from ``base``'s weights unless None), fine-tuned on every face not in
    ``test``."""
    from c3ae_edge.models import create_model
    from c3ae_edge.train.loop import finetune

    train_idx = np.setdiff1d(np.arange(len(fd.samples)), test)
    model = create_model(model_name)
    if base is not None:
        model.load_state_dict(base.state_dict())
    if epochs > 0:
        finetune(model, fd, train_idx, epochs=epochs, lr=lr, seed=seed)
    return model


def _abs_errors(model, fd: FaceData, test: np.ndarray, weights: str) -> np.ndarray:
    """|predicted - true age| of the ``test`` faces (a non-finite prediction is a DataError naming ``weights``)."""
    model.eval()
    with torch.no_grad():
        x, y = fd.batch(list(test))
        return (torch.from_numpy(finite(model(x).numpy(), weights)) - y).abs().numpy()

"""``train`` and ``evaluate`` commands (``predict``: c3ae_edge/cli/predict.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(evaluate)


_O = typer.Option
_TRAIN = {
    "data": _O("utkface:../shared/data/utkface", help="KIND:PATH, KIND in utkface, fgnet, csv, imdb, wiki"),
    "model": _O("c3ae_full", help="registered model name (c3ae-edge models)"),
    "out": _O(Path("runs/train"), help="folder for checkpoints, split.json, history.json"),
    "recipe": _O("fast", help="fast (our measured default: AdamW, cosine, EMA) | paper | paper-ablation"),
    "epochs": _O(None, help="override the recipe's epochs"),
    "batch_size": _O(None, "--batch-size"),
    "lr": _O(None),
    "dropout": _O(None),
    "erase_p": _O(None, "--erase-p", help="random-erasing probability per crop (augmentation)"),
    "jitter": _O(None, help="face-box jitter, fraction of the box size (augmentation)"),
    "alpha": _O(10.0, help="weight of the KL term"),
    "seed": _O(0),
    "limit": _O(None, help="use a random subset of this many faces"),
    "max_steps": _O(None, "--max-steps", help="stop after this many optimiser steps"),
    "split": _O(None, help="reuse a recorded split.json"),
    "resume": _O(False, "--resume", help="continue from OUT/last.pt"),
    "force": _O(False, "--force", help="replace the run already in a non-empty OUT"),
    "init": _O(None, help="warm start from these weights (a new schedule cycle, e.g. a restart)"),
    "compile": _O(True, "--compile/--no-compile", help="torch.compile the training step (about 2x on CPU)"),
    "threads": _O(None),
    "device": _O("auto", help="auto | cpu | cuda"),
}
_OVERRIDES = ("epochs", "batch_size", "lr", "dropout", "erase_p", "jitter")  # None: the recipe's value


def train(
    data: str = _TRAIN["data"],
    model: str = _TRAIN["model"],
    out: Path = _TRAIN["out"],
    recipe: str = _TRAIN["recipe"],
    epochs: int | None = _TRAIN["epochs"],
    batch_size: int | None = _TRAIN["batch_size"],
    lr: float | None = _TRAIN["lr"],
    dropout: float | None = _TRAIN["dropout"],
    erase_p: float | None = _TRAIN["erase_p"],
    jitter: float | None = _TRAIN["jitter"],
    alpha: float = _TRAIN["alpha"],
    seed: int = _TRAIN["seed"],
    limit: int | None = _TRAIN["limit"],
    max_steps: int | None = _TRAIN["max_steps"],
    split: Path | None = _TRAIN["split"],
    resume: bool = _TRAIN["resume"],
    force: bool = _TRAIN["force"],
    init: Path | None = _TRAIN["init"],
    compile: bool = _TRAIN["compile"],
    threads: int | None = _TRAIN["threads"],
    device: str = _TRAIN["device"],
) -> None:
    """Train a model on real faces (single process, or DistributedDataParallel under torchrun)."""
    _train(**locals())


def _train(**o) -> None:
    """``c3ae-edge train``: check the arguments, build the recipe's config with the overrides, train, print the
    result as JSON."""
    from c3ae_edge.errors import UsageError
    from c3ae_edge.train.loop import RECIPES, TrainConfig
    from c3ae_edge.train.loop import train as run

    if o["recipe"] not in RECIPES:
        raise UsageError(f"unknown recipe {o['recipe']!r}; use one of {', '.join(RECIPES)}")
    from c3ae_edge.models import get_model_cfg

    get_model_cfg(o["model"])
    if o["erase_p"] is not None and not 0.0 <= o["erase_p"] <= 1.0:
        raise UsageError(f"--erase-p must be in [0, 1], got {o['erase_p']}")
    if o["jitter"] is not None and not 0.0 <= o["jitter"] < 0.5:
        raise UsageError(f"--jitter must be in [0, 0.5), got {o['jitter']}")
    same = ("model", "data", "seed", "alpha", "limit", "max_steps", "compile", "threads", "device")
    cfg = TrainConfig(
        out=str(o["out"]),
        split=str(o["split"]) if o["split"] else None,
        init=str(o["init"]) if o["init"] else None,
        **{k: o[k] for k in same},
        **RECIPES[o["recipe"]],
    )
    for k in _OVERRIDES:
        if o[k] is not None:
            setattr(cfg, k, o[k])
    res = run(cfg, resume=o["resume"], force=o["force"])
    typer.echo(json.dumps(res, allow_nan=False))


def evaluate(
    data: str = typer.Option(..., help="KIND:PATH, e.g. utkface:../shared/data/utkface"),
    weights: str = typer.Option("default", help="'default' (shipped) or a .pt file"),
    model: str | None = typer.Option(None, help="model of the default weights (c3ae_full when omitted)"),
    split: str = typer.Option("all", help="all | train | val | test (of the split recorded with the weights)"),
    split_file: Path | None = typer.Option(None, "--split-file"),
    protocol: str | None = typer.Option(None, help="fgnet-paper | lopo: fine-tune and test per fold"),
    repeats: int = typer.Option(10, help="fgnet-paper: number of random 30-face test sets"),
    folds: int | None = typer.Option(None, help="lopo: only the first N subjects"),
    epochs: int = typer.Option(15, help="protocol: fine-tuning epochs per fold"),
    from_scratch: bool = typer.Option(False, "--from-scratch", help="protocol: train each fold from a fresh model"),
    limit: int | None = typer.Option(None),
    json_out: Path | None = typer.Option(None, "--json", help="write the report here ('-' for stdout)"),
) -> None:
    """MAE overall and per decade on a dataset, or an FG-NET protocol."""
    from c3ae_edge.train.evaluate import check_args, fgnet_protocol
    from c3ae_edge.train.evaluate import evaluate as run

    check_args(split, protocol, repeats, folds, epochs, limit, json_out)

    if protocol:
        rep = fgnet_protocol(
            None if weights == "default" else weights,
            data,
            protocol,
            repeats=repeats,
            epochs=epochs,
            folds=folds,
            from_scratch=from_scratch,
            log=lambda m: typer.echo(m, err=True),
        )
        summary = (
            f"{protocol}: MAE {rep['mae_mean']:.2f} ± {rep['mae_std']:.2f} over {rep['folds']} folds "
            f"(pooled {rep['mae_pooled']:.2f})"
        )
    else:
        rep = run(weights, data, model, split, str(split_file) if split_file else None, limit)
        summary = None
    _emit(rep, json_out)
    if json_out is None or str(json_out) != "-":
        if summary:
            typer.echo(summary)
        else:
            _print_report(rep)


def _print_report(rep: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        title=f"{rep['model']} on {rep['data']} ({rep['split']}): MAE {rep['mae']:.3f} years over {rep['n']} faces"
    )
    t.add_column("ages")
    t.add_column("faces", justify="right")
    t.add_column("MAE", justify="right")
    for k, v in rep["per_decade"].items():
        t.add_row(k, str(v["n"]), f"{v['mae']:.2f}")
    Console(width=None if sys.stdout.isatty() else 120).print(t)


def _emit(rep: dict, json_out: Path | None) -> None:
    if json_out is None:
        return
    text = json.dumps(rep, indent=1, allow_nan=False)
    if str(json_out) == "-":
        typer.echo(text)
    else:
        from c3ae_edge.atomic import write_atomic

        write_atomic(json_out, text)

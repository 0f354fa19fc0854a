"""``weights soup`` and ``weights release``: make and ship trained weights (typer only at import)."""

from __future__ import annotations

import typer

HELP = "Make and ship trained weights: greedy weight soups, releases with a regenerated model card."


def soup_cmd(
    out: str = typer.Argument(..., help="folder for the soup (new or empty; see --force)"),
    checkpoints: list[str] = typer.Argument(..., help="two or more checkpoints of one model sharing a recorded split"),
    data: str = typer.Option(
        None, "--data", help="KIND:PATH of the split's dataset (default: the one the first run recorded)"
    ),
    refit_w2: bool = typer.Option(
        False, "--refit-w2", help="then re-fit W2 on the clean train crops; keep it if val MAE drops"
    ),
    threads: int = typer.Option(None, "--threads", min=1, help="torch threads"),
    force: bool = typer.Option(False, "--force", help="replace the soup files in a non-empty OUT"),
) -> None:
    from pathlib import Path

    import torch

    from c3ae_edge.train.soup import make_soup

    if threads:
        torch.set_num_threads(threads)
    meta = make_soup(
        Path(out), [Path(c) for c in checkpoints], data, refit_w2, force, log=lambda m: typer.echo(m, err=True)
    )
    typer.echo(f"wrote {Path(out) / 'best.pt'}: soup of {len(meta['soup'])}, validation MAE {meta['val_mae']:.4f}")


def release_cmd(
    run: str = typer.Argument(None, help="the training run folder (holds best.pt, config.json, history.json)"),
    model: str = typer.Option(None, "--model", help="the model the run trained (checked against best.pt)"),
    data: str = typer.Option(None, "--data", help="UTKFace as KIND:PATH (default utkface:$C3AE_DATA/utkface)"),
    fgnet: str = typer.Option(None, "--fgnet", help="FG-NET as KIND:PATH (default fgnet:$C3AE_DATA/fgnet)"),
    fgnet_repeats: int = typer.Option(
        10, "--fgnet-repeats", min=0, help="folds of the paper's FG-NET protocol (0: skip)"
    ),
    fgnet_epochs: int = typer.Option(15, "--fgnet-epochs", min=1, help="fine-tuning epochs per FG-NET fold"),
    render_only: bool = typer.Option(
        False, "--render-only", help="only regenerate MODEL_CARD.md from the shipped cards"
    ),
) -> None:
    import json
    from pathlib import Path

    from c3ae_edge.errors import UsageError

    if not render_only and not (run and model):
        raise UsageError("weights release needs RUN and --model NAME (or --render-only)")
    from c3ae_edge.atomic import write_atomic
    from c3ae_edge.export.calibration import data_root
    from c3ae_edge.train.release import release, render
    from c3ae_edge.weights import WEIGHTS_DIR

    if not render_only:
        root = data_root(None)
        c = release(
            Path(run),
            model,
            data or f"utkface:{root / 'utkface'}",
            fgnet or f"fgnet:{root / 'fgnet'}",
            fgnet_repeats,
            fgnet_epochs,
        )
        typer.echo(json.dumps({k: c[k] for k in ("model", "weights_sha256")} | {"test_mae": c["utkface_test"]["mae"]}))
    write_atomic(WEIGHTS_DIR / "MODEL_CARD.md", render())


def artifacts_cmd(
    model: str = typer.Option("c3ae_full", "--model", help="a model with shipped weights"),
    data: str = typer.Option(None, "--data", help="face data root (default $C3AE_DATA or ../shared/data)"),
) -> None:
    from c3ae_edge.export.ship import ship_artifacts

    typer.echo(f"wrote {ship_artifacts(model, data, log=lambda m: typer.echo(m, err=True))}")


SUBCOMMANDS = (  # name, function, help
    (
        "soup",
        soup_cmd,
        "Average checkpoints of one model trained on one split, keeping each only if it "
        "lowers validation MAE (a greedy weight soup; the test split is not read). Writes "
        "OUT/best.pt, split.json, config.json.",
    ),
    (
        "release",
        release_cmd,
        "Ship a training run (or soup) as the default weights of its model: copy "
        "best.pt and its split into the package, evaluate, regenerate MODEL_CARD.md.",
    ),
    (
        "artifacts",
        artifacts_cmd,
        "Export the verified artifacts that ship with a model (int8 and fp32 TFLite of an rpi4 export of its shipped "
        "weights) into the package: what `c3ae-edge predict` runs without PyTorch.",
    ),
)


def register(app: typer.Typer) -> None:
    weights = typer.Typer(no_args_is_help=True, add_completion=False, help=HELP)
    for name, fn, text in SUBCOMMANDS:
        weights.command(name, help=text)(fn)
    app.add_typer(weights, name="weights")

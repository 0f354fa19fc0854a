"""``models``: the registered models with their computed size and cost beside the paper's (typer only at import)."""

from __future__ import annotations

import json
import sys

import typer

_COLUMNS = (
    "model",
    "params",
    "MACC",
    "conv MACC",
    "fp32 size",
    "paper params",
    "Δ params",
    "paper MACC",
    "paper MAE (Morph II)",
)


def register(app: typer.Typer) -> None:
    app.command()(models)


def models(
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    pattern: str | None = typer.Option(None, "--filter", help="glob on model names"),
) -> None:
    """Every registered model: params, MACC and fp32 size computed from the model, beside the paper's values."""
    from c3ae_edge.models.info import model_rows

    rows = model_rows(pattern)
    if json_out:
        typer.echo(json.dumps(rows, indent=1))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(title="c3ae-edge models (ours: computed from the module; paper: reference values from Tables 2/3/5)")
    for col in _COLUMNS:
        t.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        p = r["paper"] or {}
        delta = f"{r['paper_params_delta_pct']:+.1f}%" if r.get("paper_params_delta_pct") is not None else "-"
        t.add_row(
            r["name"],
            f"{r['params']:,}",
            f"{r['macc']:,}",
            f"{r['conv_macc']:,}",
            f"{r['fp32_bytes'] / 1024:.1f} KiB",
            f"{p['params']:,}" if p.get("params") else "-",
            delta,
            f"{p['macc_m']}M" if p.get("macc_m") else "-",
            f"{p['mae_morph']}" if p.get("mae_morph") else "-",
        )
    Console(width=None if sys.stdout.isatty() else 200).print(t)

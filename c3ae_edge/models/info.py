"""Rows of ``c3ae-edge models``: every number computed from the module, the paper's beside it."""

from __future__ import annotations

from dataclasses import asdict

from c3ae_edge.models import create_model, get_model_cfg, list_models
from c3ae_edge.models.profile import profile_model


def model_row(name: str) -> dict:
    model = create_model(name)
    prof = profile_model(model)
    cfg = get_model_cfg(name)
    paper = asdict(cfg.paper) if cfg.paper else None
    row = {
        "name": name,
        "family": cfg.family,
        "input_shape": list(cfg.input_shape),
        **prof.to_dict(),
        "paper": paper,
        "description": cfg.description,
    }
    if paper and paper.get("params"):
        row["paper_params_delta_pct"] = round(100 * (prof.params - paper["params"]) / paper["params"], 2)
    return row


def model_rows(pattern: str | None = None) -> list[dict]:
    from c3ae_edge.errors import UsageError

    names = list_models(pattern)
    if not names:
        raise UsageError(f"no model matches {pattern!r}; known: {', '.join(list_models())}")
    return [model_row(n) for n in names]

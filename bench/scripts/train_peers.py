#!/usr/bin/env python3
"""Train every Table 3 model with the one common recipe (c3ae_edge/bench/tables/peers_recipe.json) \
and record the test MAE in
c3ae_edge/bench/tables/peers_mae.json, which `c3ae-edge bench` shows as its accuracy column.
CPU-heavy: hours on 2 cores.

    python bench/scripts/train_peers.py [--models a,b] [--epochs N] [--limit N] [--out runs/peers]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from c3ae_edge.bench.report import table_file

HERE = Path(__file__).resolve().parent


def main() -> None:
    from c3ae_edge.train.loop import TrainConfig, train

    recipe = json.loads(table_file("peers_recipe.json").read_text())
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(recipe["models"]))
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs (recorded in mae.json)")
    ap.add_argument(
        "--limit",
        type=int,
        default=recipe.get("limit"),
        help="train on a seeded subset of N faces (default: the recipe's limit; recorded)",
    )
    ap.add_argument("--data", default=recipe["data"])
    ap.add_argument("--out", default="runs/peers")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per training run")
    ap.add_argument("--force", action="store_true", help="replace earlier runs in --out")
    a = ap.parse_args()
    train_kw = dict(recipe["train"], **({"epochs": a.epochs} if a.epochs else {}))
    out_file = table_file("peers_mae.json")
    doc = (
        json.loads(out_file.read_text())
        if out_file.is_file()
        else {"recipe": "c3ae_edge/bench/tables/peers_recipe.json", "results": {}}
    )
    for name in [m.strip() for m in a.models.split(",") if m.strip()]:
        t0 = time.time()
        res = train(
            TrainConfig(
                model=name, data=a.data, out=str(Path(a.out) / name), limit=a.limit, threads=a.threads, **train_kw
            ),
            force=a.force,
        )
        doc["results"][name] = {
            "mae": round(res["test_mae"], 4),
            "best_val_mae": round(res["best_val_mae"], 4),
            "epochs_run": res["epochs_run"],
            "train": train_kw,
            "limit": a.limit,
            "data": a.data,
            "wall_s": round(time.time() - t0, 1),
        }
        subset = f"a seeded {a.limit:,}-face subset of UTKFace" if a.limit else "UTKFace"
        doc["note"] = (
            f"test MAE on the test part of {subset}, every model trained {train_kw['epochs']} epochs by "
            "bench/scripts/train_peers.py with c3ae_edge/bench/tables/peers_recipe.json: one small common "
            "budget to compare architectures, not the shipped models' accuracy"
        )
        out_file.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"{name}: test MAE {res['test_mae']:.3f} -> {out_file}")


if __name__ == "__main__":
    main()

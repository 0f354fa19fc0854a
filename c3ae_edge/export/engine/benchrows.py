"""The engine's emulated instruction counts as a bench document (schema c3ae-edge-bench/1): one row per core,
labelled as emulated instructions, with no latency (they are not time); ``c3ae-edge bench merge`` takes it."""

from __future__ import annotations

UNIT = "emulated instructions (QEMU -icount shift=0), not time"


def bench_document(man: dict, sec: dict) -> dict:
    from c3ae_edge.board.onboard import SCHEMA

    rows = []
    for core, r in sec["selftest"]["cores"].items():
        if "instructions_per_inference" not in r:
            continue
        fl = sec["flash"]["cores"].get(core, {})
        rows.append(
            {
                "model": man["model"]["name"],
                "backend": "c99-engine",
                "precision": "int8",
                "threads": 1,
                "batch": 1,
                "device": f"{core} (emulated: {r['emulator']})",
                "runtime": f"c3ae-edge C99 engine ({sec['generator']})",
                "memory": {"work_bytes": sec["work_bytes"], "flash_bytes": fl.get("flash")},
                "emulated": {
                    "unit": UNIT,
                    "instructions_per_inference": r["instructions_per_inference"],
                    "trunk_instructions_per_crop": r["trunk_instructions_per_crop"],
                    "per_face": r["per_face"],
                    "calibration": r["calibration"],
                },
            }
        )
    return {
        "schema": SCHEMA,
        "config": {"emulated": True, "unit": UNIT, "target": man["target"]["name"]},
        "environment": {"machine": "qemu", "hostname": "emulated", "cpu": {"model": "QEMU-emulated cores"}},
        "results": rows,
    }

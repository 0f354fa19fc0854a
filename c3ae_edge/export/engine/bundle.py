"""The C99 engine's part of an MCU bundle: generate, build on this host, prove bit-exact against TFLite Micro on the
verification faces, write the self-test firmware, measure flash and emulated instructions, check the budget."""

from __future__ import annotations

import json
import tempfile
from importlib import metadata, resources
from pathlib import Path

import numpy as np

from c3ae_edge.errors import VerificationError
from c3ae_edge.export.engine import cross, emit, selftest
from c3ae_edge.export.engine.graph import read_graph
from c3ae_edge.export.engine.plan import Plan, choose
from c3ae_edge.export.engine.walk import build

TEMPLATES = ("c3ae_engine.h", "c3ae_engine.c", "selftest.c", "Makefile")
MCU_TEMPLATES = ("c3ae_mcu.c", "c3ae_mcu.h")
SOURCES = (
    "c3ae_engine.h",
    "c3ae_engine.c",
    "c3ae_engine_model.h",
    "c3ae_engine_model.c",
    "c3ae_mcu.h",
    "c3ae_mcu.c",
    "c3ae_mcu_model.h",
    "c3ae_mcu_model.c",
    "selftest.c",
    "selftest_data.h",
    "selftest_data.c",
    "Makefile",
)
API = "c3ae_age(frame, width, height, stride, &box, work, &age)"


def _template(package: str, name: str) -> str:
    return resources.files(package).joinpath(name).read_text()


def write_sources(folder: Path, man: dict, art: dict, head: dict) -> tuple:
    """Generate every C source of the engine bundle; -> (network, plan)."""
    from c3ae_edge.export.mcu import model_sources

    net = build(read_graph((folder / art["file"]).read_bytes(), art["file"]))
    t = man["target"]
    plan = choose(net, head["crops"], t.get("engine_plan") or "smallest", (t.get("budget") or {}).get("work_bytes"))
    h, c = model_sources(None, head, {"input": art["input"], "outputs": art["outputs"]}, man["crop"], None)
    (folder / "c3ae_mcu_model.h").write_text(h)
    (folder / "c3ae_mcu_model.c").write_text(c)
    (folder / "c3ae_engine_model.h").write_text(emit.header(net, plan, art["file"]))
    (folder / "c3ae_engine_model.c").write_text(emit.source(net, plan, art["file"]))
    for name in TEMPLATES:
        (folder / name).write_text(_template(__package__, name))
    for name in MCU_TEMPLATES:
        (folder / name).write_text(_template("c3ae_edge.export.mcu", name))
    return net, plan


def exactness(host, tflm, x: np.ndarray) -> dict:
    """The engine's features against TFLM's on every crop of every verification face (the same int8 inputs)."""
    q = tflm.quantize(x)
    flat = q.reshape(-1, *q.shape[-3:])
    want = tflm.features(flat).reshape(len(flat), -1)
    got = host.trunk(flat)
    per_face = np.abs(got.astype(int) - want).reshape(len(q), -1).max(1)
    out = {
        "reference": "tflite-micro/reference (TFLite Micro's reference kernels, this host)",
        "faces": int(len(q)),
        "crops": int(len(flat)),
        "bit_exact_faces": int((per_face == 0).sum()),
        "max_lsb_per_face": int(per_face.max()) if len(per_face) else 0,
        "inexact_ops": [],
    }
    if out["bit_exact_faces"] != out["faces"]:
        raise VerificationError(
            f"engine: {out['faces'] - out['bit_exact_faces']} of {out['faces']} verification faces differ from TFLM "
            f"by up to {out['max_lsb_per_face']} LSB"
        )
    return out


def _flash(folder: Path, log) -> dict:
    out: dict = {"flags": list(cross.SIZE_FLAGS), "cores": {}}
    for core in cross.CORES:
        why = cross.compiler_missing(core)
        if why:
            out["cores"][core.name] = {"status": f"not measured: {why}"}
            continue
        row = cross.flash(folder, core)
        out["cores"][core.name] = {"compiler": f"{core.cc} {cross.compiler_version(core.cc)}", **row}
    return out


def _qemu(folder: Path, log) -> dict:
    out = {}
    for core in cross.CORES:
        why = cross.run_missing(core)
        if why:
            log(f"engine: not run on {core.name}: {why}")
            out[core.name] = {"status": f"not run: {why}"}
            continue
        res = cross.selftest(folder, core)
        s = res["summary"]
        if not (s.get("bit_exact") and s.get("guard_intact") and res["exit"] == 0):
            raise VerificationError(
                f"engine self-test on {core.name}: bit_exact {s.get('bit_exact')}, guard "
                f"{s.get('guard_intact')}, exit {res['exit']}"
            )
        out[core.name] = {
            "status": "bit-exact",
            "emulator": f"{core.qemu} -M {core.machine} -icount shift=0",
            "instructions_per_inference": s["instructions"],
            "trunk_instructions_per_crop": s["trunk_instructions"],
            "per_face": [r["instructions"] for r in res["lines"]],
            "calibration": {"measured": s["calibration_instructions"], "expected": s["calibration_expected"]},
            "digest": s["digest"],
        }
    return out


def _check_budget(man: dict, plan: Plan, flash: dict) -> dict:
    t = man["target"]
    budget = t.get("budget") or {}
    sizes = [c["flash"] for c in flash["cores"].values() if "flash" in c]
    checks = (("work_bytes", plan.work_bytes, "work buffer"), ("engine_flash_bytes", max(sizes, default=0), "flash"))
    for key, have, what in checks:
        if key in budget and have > budget[key]:
            raise VerificationError(
                f"engine: {what} {have:,} bytes exceeds target {t['name']}'s budget {key} = {budget[key]:,}"
            )
    return budget


def write_engine(folder: Path, man: dict, faces, log=print) -> dict:
    """Everything of the engine bundle; -> the manifest's "engine" section (the "mcu" section of --engine tflm)."""
    from c3ae_edge.export.backends.tflm_runtime import TFLMRunner
    from c3ae_edge.export.engine.host import build_host

    art = next(a for a in man["artifacts"] if a["backend"] == "tflm")
    head = json.loads((folder / art["files"][1]).read_text())
    net, plan = write_sources(folder, man, art, head)
    _check_budget(man, plan, {"cores": {}})  # the work buffer first: fail before minutes of verification
    tflm = TFLMRunner(folder / art["file"])
    with tempfile.TemporaryDirectory() as td:
        host = build_host(folder, Path(td))
        exact = exactness(host, tflm, faces.x)
        log(
            f"engine: {exact['faces']} faces ({exact['crops']} crops) bit-exact with TFLM; work buffer "
            f"{plan.work_bytes:,} bytes"
        )
        chosen = selftest.pick_bundle(folder, man)
        crop = selftest.golden(chosen, host, tflm)
    (folder / "selftest_data.h").write_text(selftest.header(len(chosen)))
    (folder / "selftest_data.c").write_text(selftest.source(chosen, crop))
    flash = _flash(folder, log)
    budget = _check_budget(man, plan, flash)
    runs = _qemu(folder, log)
    return section(net, plan, exact, flash, runs, budget, chosen, art)


def section(net, plan: Plan, exact: dict, flash: dict, runs: dict, budget: dict, chosen, art: dict) -> dict:
    return {
        "kind": "c99",
        "generated_from": art["file"],
        "generator": f"c3ae-edge {metadata.version('c3ae-edge')}",
        "api": API,
        "sources": list(SOURCES),
        "work_bytes": plan.work_bytes,
        "plan": plan_record(net, plan),
        "exactness": exact,
        "flash": flash,
        "selftest": {
            "faces": [f.name for f in chosen],
            "frame": f"{selftest.FRAME}x{selftest.FRAME} RGB888",
            "method": "QEMU -icount shift=0 (1 ns of virtual time per guest instruction): MPS2 CMSDK timer 0 at "
            "25 MHz = 40 instructions per tick; RISC-V minstret = the instruction count. Emulated instruction "
            "counts, not time; a 2-instructions-per-iteration loop checks the conversion",
            "cores": runs,
        },
        "budget": budget,
        "graph_ops": net.ops,
    }


def plan_record(net, plan: Plan) -> dict:
    layers = []
    for i, L in enumerate(net.layers):
        h, w, c = L.out_shape
        name = L.kind if L.kind != "conv" else f"conv {L.k}x{L.k}"
        layers.append(
            {
                "layer": i,
                "op": name + (" +requant" if L.table else "") + (" +squeeze-excite" if L.se else ""),
                "output": [h, w, c],
                "rows_held": plan.rings[i],
                "kept_whole": i in plan.kept,
                "bytes": plan.rings[i] * w * c,
                "offset": plan.offsets[i],
            }
        )
    return {
        "layers": layers,
        "passes": [[p.first, p.last] for p in plan.passes],
        "static": plan.static,
        "macs_per_crop": plan.macs,
        "graph_macs_per_crop": plan.base_macs,
        "recompute": round(plan.recompute, 4),
        "input_rows_per_crop": plan.input_rows,
        "candidates": plan.candidates,
    }


def finish_bundle(folder: Path, man: dict, sec: dict, log=print) -> None:
    """README, the emulated-instruction bench rows, and one summary line."""
    from c3ae_edge.export.engine.benchrows import bench_document
    from c3ae_edge.export.manifest import Manifest
    from c3ae_edge.export.mcu.readme import engine_readme

    m = Manifest.from_dict({**man, "engine": sec}, "manifest")
    (folder / "README.md").write_text(engine_readme(folder, m, sec, sec.get("tflm_arena_bytes")))
    doc = bench_document(man, sec)
    if doc["results"]:
        (folder / "bench_qemu.json").write_text(json.dumps(doc, indent=1) + "\n")
    runs = sec["selftest"]["cores"]
    counts = ", ".join(
        f"{c} {r['instructions_per_inference'] / 1e6:.1f} M"
        for c, r in runs.items()
        if "instructions_per_inference" in r
    )
    log(
        f"engine: work buffer {sec['work_bytes']:,} bytes (TFLM arena {sec.get('tflm_arena_bytes') or 0:,}); "
        f"emulated instructions per face: {counts or 'not measured'}"
    )

"""What the tflm backend writes into a microcontroller bundle, as functions of the manifest, the artifact and the
package (``TFLMBackend.derived_files``): export writes each file with these, and ``verify`` makes it again and compares
bytes, naming the file that differs.

- both engines: ``c3ae_mcu.c``/``.h`` (package copies), ``c3ae_mcu_model.c``/``.h`` (crop, normalisation and head
  weights from the manifest and ``*.head.json``; engine tflm: with the flatbuffer array and the arena the manifest
  records), ``README.md`` (the manifest's sections and the bundle's file sizes);
- engine c99: the engine's templates (copies), ``c3ae_engine_model.c``/``.h`` (the graph walked and planned again),
  ``selftest_data.c``/``.h`` (the parity faces, the C library's crops built on this host, TFLM's features of them) and
  ``bench_qemu.json`` where the emulated cores ran;
- engine tflm: ``main.cc`` (copy), ``c3ae_ops.h`` (the graph's operators), ``c3ae_model.h`` with the arena lines.
"""

from __future__ import annotations

import json
import tempfile
from importlib import resources
from pathlib import Path

from c3ae_edge.export.derived import Derived, NotHere, Source

MCU = "c3ae_edge.export.mcu"
ENGINE = "c3ae_edge.export.engine"


def copy(package: str, name: str) -> Derived:
    """A template of ``package`` copied into bundles as it is."""

    def make(_: Source) -> bytes:
        return resources.files(package).joinpath(name).read_bytes()

    return Derived(make, f"{package.replace('.', '/')}/{name}", copy=True)


def _flat(s: Source) -> bytes:
    return s.once("flat", lambda: s.read(s.artifact("tflm")["file"]))


def _model_sources(s: Source) -> tuple[str, str]:
    """(c3ae_mcu_model.h, c3ae_mcu_model.c); engine tflm: with the flatbuffer and the recorded arena."""
    from c3ae_edge.export.mcu import model_sources

    def make():
        art = s.artifact("tflm")
        head = s.json(art["files"][1])
        io = {"input": art["input"], "outputs": art["outputs"]}
        if "mcu" in s.man:
            return model_sources(_flat(s), head, io, s.man["crop"], s.man["mcu"]["arena"]["bytes"])
        return model_sources(None, head, io, s.man["crop"], None)

    return s.once("model_sources", make)


def _net_plan(s: Source):
    """The engine's network and memory plan, as ``engine.bundle.write_sources`` chooses them."""
    from c3ae_edge.export.engine.graph import read_graph
    from c3ae_edge.export.engine.plan import choose
    from c3ae_edge.export.engine.walk import build

    def make():
        art = s.artifact("tflm")
        net = build(read_graph(_flat(s), art["file"]))
        t = s.man["target"]
        crops = s.json(art["files"][1])["crops"]
        return net, choose(net, crops, t.get("engine_plan") or "smallest", (t.get("budget") or {}).get("work_bytes"))

    return s.once("net_plan", make)


def _engine_model(which: str):
    def make(s: Source) -> str:
        from c3ae_edge.export.engine import emit

        net, plan = _net_plan(s)
        return getattr(emit, which)(net, plan, s.artifact("tflm")["file"])

    return make


def _selftest_header(s: Source) -> str:
    from c3ae_edge.export.engine import selftest

    return selftest.header(len(selftest.pick_bundle(s.folder, s.man)))


def _selftest_source(s: Source) -> str:
    """The parity faces' frames, the C library's crops of them (built on this host) and TFLM's features."""
    from c3ae_edge.export.backends.tflm_runtime import TFLMRunner
    from c3ae_edge.export.engine import selftest
    from c3ae_edge.export.engine.host import build_host, host_cc

    if host_cc() is None:
        raise NotHere("no host C compiler (cc, gcc or clang) to build the C library that cuts its crops")
    chosen = selftest.pick_bundle(s.folder, s.man)
    tflm = TFLMRunner(s.folder / s.artifact("tflm")["file"])
    with tempfile.TemporaryDirectory() as td:
        crop = selftest.golden(chosen, build_host(s.folder, Path(td)), tflm)
    return selftest.source(chosen, crop)


def _bench(s: Source) -> str:
    from c3ae_edge.export.engine.benchrows import bench_document

    return json.dumps(bench_document(s.man, s.man["engine"]), indent=1) + "\n"


def _engine_readme(s: Source) -> str:
    from c3ae_edge.export.mcu.readme import engine_readme

    sec = s.man["engine"]
    return engine_readme(s.folder, s.manifest, sec, sec.get("tflm_arena_bytes"))


def _ops(s: Source) -> str:
    from c3ae_edge.export.mcu import op_names, resolver_header

    return resolver_header(op_names(_flat(s)))


def _tflm_model_h(s: Source) -> str:
    from c3ae_edge.export.firmware import header
    from c3ae_edge.export.mcu import with_tflm_lines

    return with_tflm_lines(header(s.manifest), s.man["mcu"])


def _tflm_readme(s: Source) -> str:
    from c3ae_edge.export.mcu.readme import tflm_readme

    return tflm_readme(s.folder, s.manifest, s.man["mcu"])


def _model_pair() -> dict[str, Derived]:
    src = "the tflm artifact, its .head.json and manifest.json crop"
    return {
        "c3ae_mcu_model.h": Derived(lambda s: _model_sources(s)[0], src),
        "c3ae_mcu_model.c": Derived(lambda s: _model_sources(s)[1], src),
    }


def engine_files(man: dict) -> dict[str, Derived]:
    """The C99 engine bundle's files (``engine.bundle.SOURCES``, README, bench rows)."""
    from c3ae_edge.export.engine.bundle import MCU_TEMPLATES, TEMPLATES

    graph = "the tflm artifact (graph walked, memory planned for manifest.json target)"
    out = {n: copy(ENGINE, n) for n in TEMPLATES} | {n: copy(MCU, n) for n in MCU_TEMPLATES} | _model_pair()
    out["c3ae_engine_model.h"] = Derived(_engine_model("header"), graph)
    out["c3ae_engine_model.c"] = Derived(_engine_model("source"), graph)
    out["selftest_data.h"] = Derived(_selftest_header, "parity_crops.npy")
    out["selftest_data.c"] = Derived(
        _selftest_source, "parity_crops.npy, the C library built on this host and TFLM on its crops"
    )
    cores = ((man.get("engine") or {}).get("selftest") or {}).get("cores") or {}
    if any("instructions_per_inference" in r for r in cores.values()):
        out["bench_qemu.json"] = Derived(_bench, "manifest.json engine")
    out["README.md"] = Derived(_engine_readme, "manifest.json and the bundle's file sizes")
    return out


def tflm_files() -> dict[str, Derived]:
    """The TFLite Micro bundle's files (``mcu.TEMPLATES``, model arrays, resolver, header, README)."""
    from c3ae_edge.export.mcu import TEMPLATES

    out = {n: copy(MCU, n) for n in TEMPLATES} | _model_pair()
    out["c3ae_ops.h"] = Derived(_ops, "the tflm artifact's operators")
    out["c3ae_model.h"] = Derived(_tflm_model_h, "manifest.json (with its mcu section)")
    out["README.md"] = Derived(_tflm_readme, "manifest.json and the bundle's file sizes")
    return out


def derived_files(man: dict) -> dict[str, Derived]:
    """Every file the tflm backend writes into a bundle of ``man``'s engine (default tflm, as ``bundle_extras``)."""
    return engine_files(man) if (man["target"].get("engine") or "tflm") == "c99" else tflm_files()


MEASURED = {
    "engine": (
        "manifest.json engine exactness, flash, selftest cores",
        "measured at export: the engine against TFLite Micro on the verification faces (not in the bundle), "
        "cross-compiled sizes, emulated runs (verify re-runs the engine on the parity faces)",
    ),
    "mcu": ("manifest.json mcu cross_compile", "cross-compiled sizes measured at export (arm-none-eabi-gcc)"),
}


def _engine_section(s: Source) -> tuple[dict, dict]:
    """(what the engine section's derivable entries are, what the manifest says)."""
    from c3ae_edge.export.backends.tflm_runtime import smallest_arena
    from c3ae_edge.export.engine import selftest
    from c3ae_edge.export.engine.bundle import section

    net, plan = _net_plan(s)
    budget = s.man["target"].get("budget") or {}
    want = section(net, plan, None, None, {}, budget, selftest.pick_bundle(s.folder, s.man), s.artifact("tflm"))
    want["tflm_arena_bytes"] = smallest_arena(_flat(s))
    have = json.loads(json.dumps(s.man["engine"]))
    for d in (want, have):  # measured on what is not here: listed as unverified
        d.pop("exactness", None)
        d.pop("flash", None)
        (d.get("selftest") or {}).pop("cores", None)
    return want, have


def _mcu_section(s: Source) -> tuple[dict, dict]:
    from c3ae_edge.export.mcu import mcu_record

    art = s.artifact("tflm")
    want = {**mcu_record(art, _flat(s), s.json(art["files"][1])), "budget": s.man["target"].get("budget") or {}}
    have = {k: v for k, v in s.man["mcu"].items() if k != "cross_compile"}
    return want, have


def sections(s: Source) -> dict:
    """``rederive_sections``: the backend's manifest section (``engine`` or ``mcu``) recomputed from the artifact, the
    parity faces and the target, but for what export measured on faces or compilers that are not here."""
    from c3ae_edge.errors import VerificationError

    key = "engine" if "engine" in s.man else "mcu" if "mcu" in s.man else None
    if key is None:
        return {"checked": [], "unverified": {}}
    want, have = (_engine_section if key == "engine" else _mcu_section)(s)
    want = json.loads(json.dumps(want))  # tuples as JSON lists
    bad = sorted(k for k in {*want, *have} if want.get(k) != have.get(k))
    if bad:
        raise VerificationError(
            f"{s.folder}: manifest.json {key} {', '.join(bad)}: not what the artifact gives (edited after export: "
            "refusing)"
        )
    return {"checked": [f"manifest.json {key}"], "unverified": dict([MEASURED[key]])}

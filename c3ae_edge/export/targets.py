"""Target profiles: one TOML per board in ``targets/`` (package ``c3ae_edge.targets``), or a user's own
file."""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from c3ae_edge import shipped
from c3ae_edge.errors import UsageError

MAX_INT8_DELTA = 0.15  # years of MAE an int8 artifact may lose against fp32 before the export fails
# per-face |int8 age - fp32 age| on the verification faces, years. Good artifacts measured on an AVX2 EPYC (500 faces):
# rpi int8 p99 1.11 / max 1.55 (tflite-runtime: 1.04 / 2.21), ONNX u8u8 1.37 / 1.90, OpenVINO 1.48 / 2.0, and 3.6 on one
# face of another 200-face draw (the max of a set grows with its size); the saturated AVX2 ones reached 8-46 y.
MAX_INT8_FACE_P99 = 2.0
MAX_INT8_FACE_MAX = 4.0
REWRITES = ("dwpool",)  # the names in c3ae_edge.export.rewrite.VARIANTS (not imported here: it needs torch)


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    arch: str
    backend: str
    precisions: tuple[str, ...]
    runtime: str = ""
    delegate: str = "cpu"
    threads: int = 1
    aliases: tuple[str, ...] = ()
    max_int8_mae_delta: float = MAX_INT8_DELTA
    max_int8_face_p99: float = MAX_INT8_FACE_P99
    max_int8_face_max: float = MAX_INT8_FACE_MAX
    runtimes: tuple[str, ...] = ()  # runtime ids of the backend (c3ae-edge runtimes) every artifact is verified under
    int8_rewrites: tuple[str, ...] = ()  # c3ae_edge.export.rewrite names, applied to the model before the int8 export
    budget: dict = field(
        default_factory=dict
    )  # memory budget of the part in bytes, checked by backends that measure it
    engine: str = ""  # microcontroller targets (backend tflm): "c99" (generated engine) or "tflm" (TFLite Micro)
    engine_plan: str = ""  # the C99 engine's memory plan: "smallest" (default) or "fastest" within the budget
    cpu_hz: int = 0  # the part's core clock, for the on-board cycle counter's conversion to time
    source: str = ""

    @property
    def primary(self) -> str:
        return self.precisions[0]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["precisions"], d["aliases"], d["int8_rewrites"] = (
            list(self.precisions),
            list(self.aliases),
            list(self.int8_rewrites),
        )
        d["runtimes"] = list(self.runtimes)
        for k in ("engine", "engine_plan", "cpu_hz"):  # microcontroller fields: absent from other targets' manifests
            if not d[k]:
                del d[k]
        return d


_TYPES = {
    "name": str,
    "description": str,
    "arch": str,
    "backend": str,
    "precisions": list,
    "runtime": str,
    "delegate": str,
    "threads": int,
    "aliases": list,
    "max_int8_mae_delta": (int, float),
    "int8_rewrites": list,
    "max_int8_face_p99": (int, float),
    "max_int8_face_max": (int, float),
    "runtimes": list,
    "budget": dict,
    "engine": str,
    "engine_plan": str,
    "cpu_hz": int,
}
ENGINES = ("c99", "tflm")
ENGINE_PLANS = ("smallest", "fastest")
_REQUIRED = ("name", "description", "arch", "backend", "precisions")
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # names become folder names: no '/', '.', '..' or spaces


def parse(text: str, where: str) -> Target:
    """TOML text -> Target, every field checked: unknown keys, types, backend and precisions."""
    from c3ae_edge.export.registry import backend_names, get_backend

    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{where}: not valid TOML ({e})") from None
    unknown = sorted(set(d) - set(_TYPES))
    if unknown:
        raise UsageError(f"{where}: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(_TYPES)})")
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise UsageError(f"{where}: missing field(s) {', '.join(missing)}")
    for k, v in d.items():
        if not isinstance(v, _TYPES[k]) or isinstance(v, bool):
            raise UsageError(f"{where}: field {k!r} must be {getattr(_TYPES[k], '__name__', 'a number')}, got {v!r}")
    for k in ("precisions", "aliases", "int8_rewrites"):
        if not all(isinstance(v, str) for v in d.get(k, [])):
            raise UsageError(f"{where}: field {k!r} must be a list of strings, got {d[k]!r}")
    bad = [n for n in [d["name"], *d.get("aliases", [])] if not SAFE_NAME.fullmatch(n)]
    if bad:
        raise UsageError(
            f"{where}: target name or alias {bad[0]!r} must be 1-64 letters, digits, '_' or '-' (it names the bundle "
            "folder)"
        )
    if d["backend"] not in backend_names():
        raise UsageError(f"{where}: backend {d['backend']!r} is not one of {', '.join(backend_names())}")
    allowed = get_backend(d["backend"]).spec.precisions
    bad = [p for p in d["precisions"] if p not in allowed]
    if bad or not d["precisions"] or len(set(d["precisions"])) != len(d["precisions"]):
        raise UsageError(
            f"{where}: precisions {d['precisions']!r} must be distinct values of {', '.join(allowed)} for "
            f"{d['backend']}"
        )
    if "threads" in d and d["threads"] < 1:
        raise UsageError(f"{where}: threads must be >= 1")
    if not 0 < float(d.get("max_int8_mae_delta", MAX_INT8_DELTA)) <= 10:
        raise UsageError(f"{where}: max_int8_mae_delta must be in (0, 10] years")
    for key in ("max_int8_face_p99", "max_int8_face_max"):
        if key in d and not 0 < float(d[key]) <= 10:
            raise UsageError(f"{where}: {key} must be in (0, 10] years")
    known = [r.id for r in get_backend(d["backend"]).runtimes]
    bad = [r for r in d.get("runtimes", ()) if r not in known]
    if bad or len(set(d.get("runtimes", ()))) != len(d.get("runtimes", ())):
        raise UsageError(
            f"{where}: runtimes {d['runtimes']!r} must be distinct values of {', '.join(known)} for {d['backend']}"
        )
    d["runtimes"] = tuple(d.get("runtimes") or known[:1])
    if any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in d.get("budget", {}).values()):
        raise UsageError(f"{where}: budget values must be positive integers (bytes), got {d['budget']!r}")
    _check_engine(d, where)
    bad = [r for r in d.get("int8_rewrites", ()) if r not in REWRITES]
    if bad:
        raise UsageError(f"{where}: int8_rewrites {bad!r} unknown (known: {', '.join(REWRITES)})")
    d["precisions"], d["aliases"] = tuple(d["precisions"]), tuple(d.get("aliases", ()))
    d["int8_rewrites"] = tuple(d.get("int8_rewrites", ()))
    return Target(**d, source=where)


def _check_engine(d: dict, where: str) -> None:
    """engine / engine_plan / cpu_hz: microcontroller targets only, known values."""
    if d.get("engine") and d["backend"] != "tflm":
        raise UsageError(f"{where}: engine applies to microcontroller targets (backend tflm), not {d['backend']}")
    if d.get("engine", "c99") not in ENGINES:
        raise UsageError(f"{where}: engine {d['engine']!r} must be one of {', '.join(ENGINES)}")
    if d.get("engine_plan", "smallest") not in ENGINE_PLANS:
        raise UsageError(f"{where}: engine_plan {d['engine_plan']!r} must be one of {', '.join(ENGINE_PLANS)}")
    if d.get("cpu_hz", 1) <= 0:
        raise UsageError(f"{where}: cpu_hz must be a positive integer (Hz)")


def with_engine(t: Target, engine: str | None) -> Target:
    """``t`` with the engine ``--engine`` asks for (microcontroller targets only)."""
    import dataclasses

    if not engine:
        return t
    if t.backend != "tflm":
        raise UsageError(f"--engine applies to microcontroller targets (cortex-m, esp32s3, esp32c3), not {t.name}")
    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    return dataclasses.replace(t, engine=engine)


def builtin() -> dict[str, Target]:
    """Every shipped target by name."""
    out = {}
    for f in sorted(shipped.folder("targets").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".toml"):
            t = parse(f.read_text(), f"targets/{f.name}")
            out[t.name] = t
    return out


def load_target(name_or_path: str) -> Target:
    """A shipped target by name or alias (never shadowed by a file of that name), or a path to a TOML file."""
    targets = builtin()
    for t in targets.values():
        if name_or_path == t.name or name_or_path in t.aliases:
            return t
    if name_or_path.endswith(".toml") or "/" in name_or_path or Path(name_or_path).is_file():
        p = Path(name_or_path)
        if not p.is_file():
            raise UsageError(f"{p}: no such target file")
        try:
            text = p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"{p}: not UTF-8 text (byte {e.start})") from None
        except OSError as e:
            raise UsageError(f"{p}: cannot read ({e.strerror})") from None
        return parse(text, str(p))
    names = ", ".join(f"{t.name}" + (f" ({'/'.join(t.aliases)})" if t.aliases else "") for t in targets.values())
    raise UsageError(f"unknown target {name_or_path!r}; known: {names}; or pass a path to a board .toml")

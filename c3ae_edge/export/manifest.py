"""The bundle manifest (``manifest.json``) as one typed record: written by export, read by verify, firmware and
release code. The standalone scripts in c3ae_edge/board read the same JSON with numpy only."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from c3ae_edge.errors import DataError

SCHEMA = "c3ae-edge-bundle/1"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Manifest:
    """Top-level sections in file order; ``extras`` holds sections a backend adds (the MCU's "mcu"), last."""

    model: dict
    target: dict
    primary: str
    crop: dict
    normalisation: str
    face_box: dict
    input: dict
    output: dict
    artifacts: list
    calibration: dict
    verification: dict
    parity_set: dict
    toolchain: dict
    build: dict
    bundle_files: list = field(default_factory=list)  # files besides the artifacts, pinned: {file, sha256, bytes, role}
    extras: dict = field(default_factory=dict)
    schema: str = SCHEMA

    @property
    def primary_artifact(self) -> dict:
        return next(a for a in self.artifacts if a["file"] == self.primary)

    @property
    def backend(self) -> str:
        return self.target["backend"]

    def to_dict(self) -> dict:
        d = {"schema": self.schema}
        d.update((k, getattr(self, k)) for k in _FIELDS if k != "schema" and (k not in _OPTIONAL or getattr(self, k)))
        return {**d, **self.extras}

    def to_json(self) -> str:
        """The bytes of ``manifest.json``: sections in order, one-space indent, a final newline."""
        return json.dumps(self.to_dict(), indent=1, sort_keys=False) + "\n"

    def with_sections(self, sections: dict) -> Manifest:
        """A copy with ``sections`` set: known ones replace their field, others are appended as extras."""
        known = {k: v for k, v in sections.items() if k in _FIELDS}
        extras = {**self.extras, **{k: v for k, v in sections.items() if k not in _FIELDS}}
        return dataclasses.replace(self, **known, extras=extras)

    @classmethod
    def from_dict(cls, d: object, where: str) -> Manifest:
        """A parsed manifest, every field the package reads checked (one DataError naming ``where`` and the field)."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise DataError(f"{where}: not a {SCHEMA} manifest")
        _check(d, where)
        kw = {k: d[k] for k in _FIELDS if k in d}
        return cls(**kw, extras={k: v for k, v in d.items() if k not in _FIELDS})

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            d = json.loads(text, parse_constant=_no_constant)
        except ValueError as e:
            raise DataError(f"{where}: not valid JSON ({e})") from None
        return cls.from_dict(d, where)

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """``manifest.json`` (or a bundle folder holding one), checked."""
        p = Path(path)
        p = p / "manifest.json" if p.is_dir() else p
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{p}: unreadable ({getattr(e, 'strerror', None) or e})") from None
        return cls.from_json(text, str(p))


_FIELDS = tuple(f.name for f in dataclasses.fields(Manifest) if f.name != "extras")
_OPTIONAL = ("bundle_files",)  # written only when not empty; older bundles have none
_TYPES = {
    f.name: str if f.type == "str" else dict if f.type == "dict" else list
    for f in dataclasses.fields(Manifest)
    if f.name not in ("extras", "schema", *_OPTIONAL)
}


def _no_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def need(d: object, key: str, typ, where: str):
    """``d[key]`` of type ``typ`` (bool is never a number), else a DataError naming ``where`` and the key."""
    v = d.get(key) if isinstance(d, dict) else None
    if not isinstance(v, typ) or isinstance(v, bool):
        name = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise DataError(f"{where}: {key!r} missing or not {name}")
    return v


def _check(d: dict, where: str) -> None:
    from c3ae_edge.export.registry import backend_names

    backend = need(need(d, "target", dict, where), "backend", str, f"{where} target")
    if backend not in backend_names():
        raise DataError(f"{where}: unknown backend {backend!r}")
    need(d["target"], "name", str, f"{where} target")
    for k in ("name", "version", "weights_sha256"):
        need(need(d, "model", dict, where), k, str, f"{where} model")
    need(d, "crop", dict, where)
    arts = need(d, "artifacts", list, where)
    if not arts:
        raise DataError(f"{where}: no artifacts")
    for i, art in enumerate(arts):
        _artifact(art, f"{where} artifacts[{i}]")
    if need(d, "primary", str, where) not in [a["file"] for a in arts]:
        raise DataError(f"{where}: 'primary' {d['primary']!r} names no artifact")
    for k, typ in _TYPES.items():
        need(d, k, typ, where)
    need(need(d, "build", dict, where), "time", str, f"{where} build")
    par = need(d, "parity_set", dict, where)
    _relative(need(par, "file", str, f"{where} parity_set"), f"{where} parity_set")
    ages = need(par, "pytorch_age", list, f"{where} parity_set")
    if not ages or not all(isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in ages):
        raise DataError(f"{where}: parity_set.pytorch_age must be a non-empty list of finite numbers")
    _bundle_files(d, where)


def _bundle_files(d: dict, where: str) -> None:
    """``bundle_files`` (optional): plain names with a sha256 each. A detector the bundle ships (its record names
    ``files``) has its model file among them, with the digest ``face_box.detector.model`` records."""
    pinned = {}
    for i, f in enumerate(need(d, "bundle_files", list, where) if "bundle_files" in d else []):
        w = f"{where} bundle_files[{i}]"
        pinned[_relative(need(f, "file", str, w), w)] = need(f, "sha256", str, w)
    det = need(d, "face_box", dict, where).get("detector")
    if isinstance(det, dict) and "files" in det:
        model = need(det, "model", dict, f"{where} face_box.detector")
        name = need(model, "file", str, f"{where} face_box.detector.model")
        if pinned.get(name) != model.get("sha256"):
            raise DataError(f"{where}: face_box.detector.model {name!r} is not pinned in bundle_files with its sha256")


def _relative(name: object, where: str) -> str:
    """A plain relative name inside the bundle (whether it is a link is checked against the folder itself)."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise DataError(f"{where}: bad file name {name!r} in the bundle")
    pure = PurePosixPath(name)
    if pure.is_absolute() or any(part in ("..", "") for part in pure.parts):
        raise DataError(f"{where}: path {name!r} leaves the bundle")
    return name


def _artifact(art: object, w: str) -> None:
    from c3ae_edge.export.parity import tolerance_cap

    name = _relative(need(art, "file", str, w), w)
    prec = need(art, "precision", str, w)
    if prec not in PRECISIONS:
        raise DataError(f"{w}: precision {prec!r} is not fp32, fp16 or int8")
    tol = float(need(art, "tolerance_years", (int, float), w))
    cap = tolerance_cap(prec)
    if not (math.isfinite(tol) and 0 < tol <= cap):
        raise DataError(f"{w}: {name}: tolerance {tol} years is outside (0, {cap}] allowed for {prec}")
    files = art.get("files", [name])
    if not isinstance(files, list) or name not in files:
        raise DataError(f"{w}: 'files' must be a list naming {name}")
    for f in files:
        _relative(f, w)
    need(art, "sha256", str, w)

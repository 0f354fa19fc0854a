"""Files of a bundle that are functions of other files: export writes them with the functions registered here and
``verify`` calls the same functions again and compares bytes, so a C array, a header constant, the README or a board
script edited after export (even with its checksums re-pinned) is caught, naming the file.

The registry maps a file name to one function ``make(Source) -> str | bytes``:
- ``GENERATED``: made from the manifest (``c3ae_model.h``, ``README.md``);
- ``copies()``: the package's own files copied as they are (``reference_infer.py``, ``stats.py``,
  the detector's code and licence);
- a backend adds its own with an optional ``derived_files(man)`` (TFLM: the C sources, see ``export/mcu/derive.py``).
A backend entry replaces a generic one of the same name (TFLM's ``c3ae_model.h`` carries its arena lines); README.md
comes last (it states the other files' sizes). A function that needs a tool this host lacks raises ``NotHere``: the
file is then listed as unverified, with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from c3ae_edge.errors import VerificationError
from c3ae_edge.export.manifest import Manifest


class NotHere(Exception):
    """A derived file that this host cannot make again (a tool is missing): listed as unverified, with the reason."""


class Source:
    """What derived files are made from: the bundle folder and its manifest (a dict, as backends see it)."""

    def __init__(self, folder: Path, man: dict):
        self.folder, self.man = Path(folder), man
        self.memo: dict[str, object] = {}

    def once(self, key: str, make: Callable[[], object]):
        """``make()`` once per Source (what several files are made from: a parsed graph, a memory plan)."""
        if key not in self.memo:
            self.memo[key] = make()
        return self.memo[key]

    @cached_property
    def manifest(self) -> Manifest:
        return Manifest.from_dict(self.man, str(self.folder / "manifest.json"))

    def artifact(self, backend: str | None = None) -> dict:
        """The primary artifact, or the first one of ``backend``."""
        arts = self.man["artifacts"]
        if backend is None:
            return next(a for a in arts if a["file"] == self.man["primary"])
        return next(a for a in arts if a.get("backend") == backend)

    def read(self, name: str) -> bytes:
        from c3ae_edge.export.bundle_check import confined

        return confined(self.folder, name).read_bytes()

    def json(self, name: str) -> dict:
        try:
            return json.loads(self.read(name))
        except ValueError as e:
            raise VerificationError(f"{self.folder / name}: not JSON ({e})") from None


Make = Callable[[Source], str | bytes]


@dataclass(frozen=True)
class Derived:
    """One derived file: how to make it, and what it is made from (said by ``verify``)."""

    make: Make
    source: str
    copy: bool = False  # a package file copied as it is (else generated)


def _header(s: Source) -> str:
    from c3ae_edge.export.firmware import header

    return header(s.manifest)


def _readme(s: Source) -> str:
    from c3ae_edge.export.firmware import readme

    return readme(s.manifest)


def board_copy(name: str) -> Derived:
    """A script of ``c3ae_edge/board`` copied into bundles as it is."""

    def make(_: Source) -> bytes:
        from c3ae_edge.board import board_script

        return board_script(name).read_bytes()

    return Derived(make, f"c3ae_edge/board/{name}", copy=True)


def detector_copy(name: str) -> Derived:
    """A file of ``c3ae_edge/data/detectors`` copied as it is."""

    def make(_: Source) -> bytes:
        from c3ae_edge.data.blazeface_detector import MODEL_DIR

        return (MODEL_DIR / name).read_bytes()

    return Derived(make, f"c3ae_edge/data/detectors/{name}", copy=True)


GENERATED: dict[str, Derived] = {
    "c3ae_model.h": Derived(_header, "manifest.json"),
    "README.md": Derived(_readme, "manifest.json"),
}


def copies(man: dict) -> dict[str, Derived]:
    """The package files a bundle carries: the reference script and the on-board runner's statistics (TFLite bundles:
    they run .tflite files), and a shipped detector's code and licence."""
    backend = (man.get("target") or {}).get("backend")
    scripts = ("reference_infer.py", "stats.py") if backend == "tflite" else ()
    out = {name: board_copy(name) for name in scripts}
    det = (man.get("face_box") or {}).get("detector") or {}
    files = det.get("files") if isinstance(det, dict) else None
    if isinstance(files, dict):
        out[str(files.get("code"))] = board_copy("blazeface.py")
        out[str(files.get("license"))] = detector_copy("LICENSE-mediapipe.txt")
    return out


def registry(man: dict, backend) -> dict[str, Derived]:
    """Every derived file of a bundle of ``backend`` (name -> Derived), in the order they are made and checked; a
    backend's entries win, README.md comes last."""
    reg = {**GENERATED, **copies(man)}
    extra = getattr(backend, "derived_files", None)
    if extra is not None:
        reg.update(extra(man))
    return {**{k: v for k, v in reg.items() if k != "README.md"}, "README.md": reg["README.md"]}


def _bytes(v: str | bytes) -> bytes:
    return v.encode() if isinstance(v, str) else v


def write_generated(folder: Path, man: dict, backend) -> None:
    """Write every generated (not copied) file of the registry into ``folder`` from the final manifest."""
    src = Source(folder, man)
    for name, d in registry(man, backend).items():
        if not d.copy:
            try:
                (folder / name).write_bytes(_bytes(d.make(src)))
            except NotHere:
                continue  # the backend wrote it, and verify on a host with the tool checks it


@dataclass
class DerivedCheck:
    """What ``check`` compared (name -> what it was made from) and what it could not (name -> why)."""

    generated: dict[str, str] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)
    unverified: dict[str, str] = field(default_factory=dict)


def check(folder: Path, man: dict, backend, listed: list[str]) -> DerivedCheck:
    """Regenerate every registered file and compare bytes; a difference is a VerificationError naming the file."""
    res, src = DerivedCheck(), Source(folder, man)
    for name, d in registry(man, backend).items():
        if name not in listed:
            raise VerificationError(f"{folder}: {name} is missing (export writes it: {d.source})")
        try:
            want = _bytes(d.make(src))
        except NotHere as e:
            res.unverified[name] = f"not re-derived here: {e}"
            continue
        except VerificationError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, StopIteration) as e:
            raise VerificationError(
                f"{folder}: {name} cannot be re-derived: manifest.json lacks what it is made from ({e!r})"
            ) from None
        if src.read(name) != want:
            what = "the package's own copy" if d.copy else f"what {d.source} gives"
            raise VerificationError(
                f"{folder}: {name} differs from {what} (edited after export, or written by another build of this "
                "c3ae-edge version: refusing)"
            )
        (res.copies if d.copy else res.generated)[name] = d.source
    return res

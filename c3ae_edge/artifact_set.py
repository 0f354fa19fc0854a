"""The verified artifacts ``predict`` runs: the shipped default model's (c3ae_edge/weights/artifacts/<model>/: the
manifest and the .tflite files of an rpi4 export of the shipped weights, nothing else) or a pulled bundle's folder.
Every artifact is checked against the sha256 its manifest records before it is opened. Torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from c3ae_edge.data.crops import CropSpec, checked_spec
from c3ae_edge.errors import DataError, UsageError, VerificationError
from c3ae_edge.export.manifest import Manifest
from c3ae_edge.shipped import ARTIFACTS

SHIPPED_DIR = ARTIFACTS
DEFAULT_MODEL = "c3ae_full"


@dataclass(frozen=True)
class ArtifactSet:
    """A manifest and the folder holding its artifacts; ``shipped``: the package's own copy (its detector model is
    the package's, c3ae_edge/data/detectors, pinned by the same sha256)."""

    folder: Path
    manifest: Manifest
    spec: CropSpec
    shipped: bool

    @property
    def model(self) -> str:
        return self.manifest.model["name"]

    @property
    def backend(self) -> str:
        return self.manifest.backend

    @property
    def detector(self) -> dict:
        """The manifest's face_box.detector record; for the shipped set without "files" (the package's own model)."""
        rec = (self.manifest.face_box or {}).get("detector") or {"name": "haar-fast", "params": {}}
        return {k: v for k, v in rec.items() if k != "files"} if self.shipped else rec

    def detector_model(self) -> Path | None:
        """The detector model file a bundle carries (confined to it; its sha256 is checked by whoever loads it);
        None for the shipped set, whose detector is the package's own."""
        files = self.detector.get("files")
        if not files or "model" not in files:
            return None
        from c3ae_edge.export.bundle_check import confined

        return confined(self.folder, files["model"])

    def precisions(self) -> list[str]:
        return [a["precision"] for a in self.manifest.artifacts]

    def artifact(self, precision: str | None = None) -> dict:
        """The manifest entry of ``precision`` (default: the primary artifact, the one the target runs)."""
        if precision is None:
            return self.manifest.primary_artifact
        for a in self.manifest.artifacts:
            if a["precision"] == precision:
                return a
        raise UsageError(f"--precision {precision}: {self.where} has {', '.join(self.precisions())}")

    def path(self, art: dict) -> Path:
        """The artifact's file, confined to the folder and checked against its sha256 (VerificationError if not)."""
        from c3ae_edge.export.bundle_check import confined, sha256

        p = confined(self.folder, art["file"])
        if not p.is_file():
            raise VerificationError(f"{self.where}: {art['file']} is missing")
        if sha256(p) != art["sha256"]:
            raise VerificationError(f"{p}: does not match its sha256 in manifest.json (swapped or corrupt)")
        return p

    @property
    def where(self) -> str:
        return f"the shipped {self.model} artifacts" if self.shipped else str(self.folder)


def shipped(model: str = DEFAULT_MODEL) -> ArtifactSet:
    """The verified artifacts that ship in the package for ``model``."""
    folder = SHIPPED_DIR / model
    if not (folder / "manifest.json").is_file():
        have = sorted(p.parent.name for p in SHIPPED_DIR.glob("*/manifest.json"))
        raise UsageError(f"no verified artifacts ship for {model!r} (shipped: {', '.join(have) or 'none'})")
    man = Manifest.read(folder)
    return ArtifactSet(folder, man, checked_spec(man.crop, f"{folder}/manifest.json crop"), True)


def bundle(folder: str | Path) -> ArtifactSet:
    """A bundle folder written by ``c3ae-edge export`` (or pulled): its manifest checked as ``verify`` checks it
    (types, confined paths, every artifact's and detector file's sha256)."""
    from c3ae_edge.export import bundle_check

    b = Path(folder)
    if not b.is_dir():
        raise DataError(f"{b}: no such bundle folder" + (" (unpack the archive first)" if b.is_file() else ""))
    man = bundle_check.load_manifest(b)
    return ArtifactSet(b, man, bundle_check.crop_spec(man, b), False)

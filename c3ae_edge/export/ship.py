"""The verified artifacts that ship inside the package for a model (what ``predict`` runs by default): an rpi4 export
of the shipped weights (int8 and fp32 TFLite, verified on 500 held-out faces under ai-edge-litert), of which the
manifest and the .tflite files are kept. Written by ``c3ae-edge weights artifacts``; checked by
tests/test_predict_pipeline.py on real faces against PyTorch."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

SHIP_TARGET = "rpi4"  # TFLite: the runtime the torch-free core installs (ai-edge-litert) runs both files
SHIP_EPOCH = 1767225600  # SOURCE_DATE_EPOCH of the shipped export (2026-01-01): the manifest's build time


def ship_artifacts(model: str, data: str | None, log: Callable[[str], None] = print) -> Path:
    """Export ``model``'s shipped weights for SHIP_TARGET, then replace c3ae_edge/weights/artifacts/<model>/ with
    the bundle's manifest.json and artifact files."""
    from c3ae_edge.export.bundle import ExportRequest, export_bundle, replace_folder
    from c3ae_edge.export.manifest import Manifest
    from c3ae_edge.shipped import ARTIFACTS as SHIPPED_DIR

    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(SHIP_EPOCH)
    try:
        with tempfile.TemporaryDirectory() as td:
            bundle = export_bundle(ExportRequest(SHIP_TARGET, model=model, out=Path(td), data=data), log=log)
            man = Manifest.read(bundle)
            SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{model}-", dir=SHIPPED_DIR))
            tmp.chmod(0o755)
            for name in ["manifest.json", *(f for a in man.artifacts for f in a.get("files", [a["file"]]))]:
                shutil.copyfile(bundle / name, tmp / name)
            replace_folder(tmp, SHIPPED_DIR / model)
    finally:
        if old is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old
    return SHIPPED_DIR / model

"""``export``: weights -> artifacts for a target -> verified, checksummed bundle, written atomically."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tarfile
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from c3ae_edge.detect import detector_record
from c3ae_edge.errors import UsageError

SCHEMA = "c3ae-edge-bundle/1"
PARITY_FACES = 8
_TOOLS = ("torch", "numpy", "onnx", "onnxruntime", "onnxscript", "openvino", "nncf", "litert-torch", "ai-edge-litert", "c3ae-edge")


def toolchain() -> dict:
    out = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def build_time() -> tuple[str, int, bool]:
    """ISO time, epoch, and whether it came from SOURCE_DATE_EPOCH (reproducible builds)."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        try:
            t = int(env)
        except ValueError:
            raise UsageError(f"SOURCE_DATE_EPOCH={env!r} is not an integer") from None
    else:
        t = int(time.time())
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), t, bool(env)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{out}: cannot create the output folder ({e.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise UsageError(f"{out}: output folder is not writable")


def _embedded(model_name: str, w_sha: str, spec, decode: dict | None, target: str) -> dict:
    """Key metadata embedded in every artifact (ONNX metadata_props, OpenVINO rt_info, TFLite metadata)."""
    from c3ae_edge.crops import ALIGNED_BOX

    d = {"schema": SCHEMA, "model": model_name, "weights_sha256": w_sha, "target": target, "crop": spec.to_dict(),
         "aligned_chip_box": list(ALIGNED_BOX), "bins": {"count": 12, "width": 10}}
    if decode:
        d["decode"] = decode
    return d


def export_bundle(target_name: str, model_name: str | None = None, weights: str | None = None, out: str | Path = "exports",
                  data: str | None = None, calibration: str | None = None, n_cal: int = 300, n_verify: int = 500, seed: int = 0,
                  max_delta: float | None = None, allow_degraded: bool = False, archive: bool = False, log=print) -> Path:
    """Build, verify and write ``out/<model>-<version>-<target>/``; -> its path. Nothing is left behind on failure."""
    import torch

    from c3ae_edge import __version__
    from c3ae_edge.crops import ALIGNED_BOX
    from c3ae_edge.errors import require
    from c3ae_edge.export import calibration as calib
    from c3ae_edge.export import rewrite
    from c3ae_edge.export.backends.common import head_weights
    from c3ae_edge.export.firmware import header, readme
    from c3ae_edge.export.registry import get_backend
    from c3ae_edge.export.targets import load_target
    from c3ae_edge.export.verify import judge, measure, predict, tolerance
    from c3ae_edge.twopoint import BIN_CENTRES, BIN_WIDTH
    from c3ae_edge.weights import load_model, sha256_file

    target = load_target(target_name)
    backend = get_backend(target.backend)
    require({"onnx": "onnx", "tflite": "litert_torch", "openvino": "openvino"}[target.backend], backend.spec.extra)
    if backend.spec.name == "tflite":
        require("ai_edge_litert", "tflite")
    if backend.spec.name == "openvino":
        require("nncf", "openvino")
    out = Path(out)
    _writable(out)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    model, spec, ck = load_model(weights, model_name)
    name = ck["model"]
    w_sha = sha256_file(ck["path"])
    final = out / f"{name}-{__version__}-{target.name}"
    max_delta = target.max_int8_mae_delta if max_delta is None else max_delta

    needs_cal = "int8" in target.precisions
    log(f"faces: calibration {n_cal if needs_cal else 0}, verification {n_verify} (data {calib.data_root(data)})")
    cal, ver = calib.select(spec, ck["path"], data, calibration, n_cal, n_verify, seed, ck=ck)
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(ver.x[i:i + 128])).numpy() for i in range(0, len(ver.x), 128)])
    decode = head_weights(model)
    _catch_ctrl_c()
    tmp = out / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        iso, epoch, reproducible = build_time()
        opts = {"stem": name, "metadata": _embedded(name, w_sha, spec, decode, target.name)}
        arts = []
        int8_model, rewrites = rewrite.apply(model, target.int8_rewrites, ver.x[:1])
        for prec in target.precisions:
            _catch_ctrl_c()  # converters' native libraries may reset SIGINT to its default (kill, no cleanup)
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(sys.stderr):  # converters print progress; stdout stays ours
                path = backend.export(int8_model if prec == "int8" else model, ver.x[:1], tmp, prec, cal.x if prec == "int8" else None, opts)
            runner = backend.load(path, 1)
            ages = predict(runner, ver.x)
            m = measure(ages, ref, ver.ages)
            result = judge(prec, m, max_delta, allow_degraded)
            files = [path.name] + ([path.with_suffix(backend.spec.options["sidecar"]).name] if "sidecar" in backend.spec.options else [])
            io = runner.io()
            arts.append({"file": path.name, "files": files, "backend": backend.spec.name, "precision": prec, **({"rewrites": rewrites} if prec == "int8" else {}), "bytes": sum((tmp / f).stat().st_size for f in files),
                         "sha256": sha256(path), "input": io["input"], "outputs": io["outputs"], "tolerance_years": tolerance(prec, m["max_abs_diff_vs_pytorch"]),
                         "verification": {**m, **result}})
            log(f"{path.name}: {arts[-1]['bytes']:,} bytes, max |age - PyTorch| {m['max_abs_diff_vs_pytorch']:.4f} y, "
                f"MAE {m['mae']:.3f} (PyTorch {m['pytorch_mae']:.3f}, delta {m['mae_delta_vs_fp32']:+.3f}) [{time.perf_counter() - t0:.1f}s]")
        pidx = list(range(PARITY_FACES))
        crops = np.stack([ver_crops(ver, i, spec) for i in pidx])
        np.save(tmp / "parity_crops.npy", crops, allow_pickle=False)
        calib.write_list(tmp / "calibration_files.txt", cal)
        shutil.copyfile(Path(__file__).with_name("reference_infer.py"), tmp / "reference_infer.py")
        man = {
            "schema": SCHEMA,
            "model": {"name": name, "version": __version__, "weights_file": Path(ck["path"]).name, "weights_sha256": w_sha,
                      "params": int(sum(p.numel() for p in model.parameters())), "trained_on": ck.get("meta", {}).get("data")},
            "target": {k: v for k, v in target.to_dict().items() if k != "source"},
            "primary": arts[0]["file"],
            "crop": spec.to_dict(),
            "normalisation": "x[c] = (pixel[c] / 255 - mean[c]) / std[c], RGB",
            "face_box": {"convention": "square (cx, cy, side) in source pixels, as OpenCV's frontal Haar cascade boxes a face",
                         "aligned_chip": {"cx": ALIGNED_BOX[0], "cy": ALIGNED_BOX[1], "side": ALIGNED_BOX[2]},
                         "detector": detector_record()},
            "input": arts[0]["input"],
            "output": {"names": [o["name"] for o in arts[0]["outputs"]],
                       "bins": {"count": int(len(BIN_CENTRES)), "width": BIN_WIDTH, "centres": [float(c) for c in BIN_CENTRES]},
                       "decode": {**(decode or {}), "formula": "age = output 'age' if present, else sum_i bins[i] * w2[i] + b2 (bins dequantised: (q - zero_point) * scale)"}},
            "artifacts": arts,
            "calibration": {**cal.identity(seed), "list": "calibration_files.txt"},
            "verification": {**ver.identity(seed), "faces": len(ver.files), "pytorch_mae": round(float(np.abs(ref - ver.ages).mean()), 4),
                             "max_int8_mae_delta": max_delta, "fp32_parity_years": 0.01},
            "parity_set": {"file": "parity_crops.npy", "shape": list(crops.shape), "dtype": "uint8", "layout": "N,S,H,W,C (RGB, before normalisation)",
                           "images": [ver.files[i] for i in pidx], "pytorch_age": [round(float(ref[i]), 6) for i in pidx]},
            "toolchain": toolchain(),
            "build": {"time": iso, "from_source_date_epoch": reproducible, "host": f"{platform.system()}-{platform.machine()}",
                      "reproducible": "same inputs + SOURCE_DATE_EPOCH give byte-identical files (ONNX, OpenVINO, TFLite checked in tests)"},
        }
        (tmp / "manifest.json").write_text(json.dumps(man, indent=1, sort_keys=False) + "\n")
        (tmp / "c3ae_model.h").write_text(header(man))
        (tmp / "README.md").write_text(readme(man))
        _sums(tmp)
        _catch_ctrl_c()
        _commit(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if archive:
        make_archive(final, epoch)
    return final


def _catch_ctrl_c() -> None:
    """Ctrl-C raises KeyboardInterrupt again (so the temporary folder is removed), whatever a library installed."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread
        pass


def ver_crops(ver, i: int, spec) -> np.ndarray:
    """uint8 crops (S, H, W, 3) of verification face i, exactly as the model saw them before normalisation."""
    from c3ae_edge.data.datasets import face_box_for
    from c3ae_edge.imageio import load_rgb

    s = ver.samples[i]
    img = load_rgb(s.path)
    return spec.crop(img, face_box_for(s, img))


def _sums(folder: Path) -> None:
    names = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    (folder / "SHA256SUMS").write_text("".join(f"{sha256(folder / n)}  {n}\n" for n in names))


def _commit(tmp: Path, final: Path) -> None:
    """Atomic replace: the old bundle (if any) moves aside, the new one is renamed in, the old one is deleted."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def make_archive(bundle: Path, epoch: int) -> Path:
    """Deterministic ``.tar.gz`` beside the bundle: sorted names, fixed owner and mtime, gzip without a timestamp."""
    import gzip
    import io

    dst = bundle.with_name(bundle.name + ".tar.gz")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(bundle.iterdir()):
            info = tarfile.TarInfo(f"{bundle.name}/{p.name}")
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = p.stat().st_size, epoch, 0o644, 0, 0, "", ""
            with open(p, "rb") as f:
                tar.addfile(info, f)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buf.getvalue())
    os.replace(tmp, dst)
    return dst

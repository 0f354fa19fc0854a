#!/usr/bin/env python3
"""Reference inference for a c3ae-edge bundle: numpy, Pillow, ai-edge-litert (or tflite_runtime) and manifest.json.

Knows nothing of the c3ae-edge package: every constant comes from manifest.json. Port these steps to firmware.

    python reference_infer.py [--artifact FILE] [--box CX,CY,SIDE] IMAGE...   ->  one JSON line per image
    python reference_infer.py --self-test     ->  the bundle's parity faces through this runtime,
                                                  against its golden outputs
Without --box the image is taken as an aligned face chip (the manifest's ``face_box.aligned_chip`` convention).
Install (Raspberry Pi OS Bookworm, Python 3.11): pip install "numpy<2" Pillow tflite-runtime==2.14.0, or pip install
ai-edge-litert Pillow; (Trixie, Python 3.13): pip install ai-edge-litert Pillow (no tflite-runtime wheel exists there).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path

INSTALL = (
    'on Python <= 3.11 (Pi OS Bookworm): pip install "numpy<2" Pillow tflite-runtime==2.14.0, '
    "or pip install ai-edge-litert Pillow; "
    "on Python 3.12+ (Pi OS Trixie): pip install ai-edge-litert Pillow"
)
try:
    import numpy as np
    from PIL import Image, ImageOps
except ImportError as _e:  # one line, not a traceback
    sys.exit(f"reference_infer: error: Python package {_e.name!r} is not installed ({INSTALL})")

HERE = Path(__file__).resolve().parent
RUNTIMES = {
    "ai-edge-litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
}  # preference order


def load_rgb(path: str) -> np.ndarray:
    """Decode, apply the EXIF rotation, RGB uint8 (H, W, 3)."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def cut(img: np.ndarray, x0: int, y0: int, n: int) -> np.ndarray:
    """img[y0:y0+n, x0:x0+n] with every source coordinate clamped into the image (edge padding)."""
    ys = np.clip(np.arange(y0, y0 + n), 0, img.shape[0] - 1)
    xs = np.clip(np.arange(x0, x0 + n), 0, img.shape[1] - 1)
    return img[ys][:, xs]


def area_weights(n: int, size: int) -> np.ndarray:
    """(size, n) matrix: output pixel i averages source span [i*n/size, (i+1)*n/size) weighted by overlap."""
    scale = n / size
    w = np.zeros((size, n), np.float64)
    for i in range(size):
        a, b = i * scale, (i + 1) * scale
        for j in range(int(np.floor(a)), min(n, int(np.ceil(b)))):
            w[i, j] = (min(b, j + 1) - max(a, j)) / scale
    return w


def linear_taps(n: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps, half-pixel centres, borders clamped: source index j, and 11-bit fixed-point weights of j, j+1."""
    scale = n / size
    j = np.zeros(size, np.int64)
    c = np.zeros((size, 2), np.int64)
    for i in range(size):
        f = np.float32((i + 0.5) * scale - 0.5)
        k = int(np.floor(f))
        t = float(f) - k
        if k < 0:
            k, t = 0, 0.0
        if k >= n - 1:
            k, t = n - 1, 0.0
        j[i] = k
        c[i] = (int(np.round((1 - t) * 2048)), int(np.round(t * 2048)))
    return j, np.minimum(j + 1, n - 1), c


def enlarge(patch: np.ndarray, size: int) -> np.ndarray:
    """Bilinear enlargement in integers: rows, then columns, then (a + b + 2) >> 2 after 16-bit high products."""
    n = patch.shape[0]
    j0, j1, c = linear_taps(n, size)
    p = patch.astype(np.int64)
    h = p[:, j0] * c[None, :, 0, None] + p[:, j1] * c[None, :, 1, None]  # (n, size, 3), 2048-scaled
    h = h >> 4
    v = ((h[j0] * c[:, 0, None, None]) >> 16) + ((h[j1] * c[:, 1, None, None]) >> 16)
    return np.clip((v + 2) >> 2, 0, 255).astype(np.uint8)


def resize(patch: np.ndarray, size: int) -> np.ndarray:
    """n x n x 3 uint8 -> size x size x 3 uint8: area average when shrinking, bilinear when enlarging."""
    n = patch.shape[0]
    if n < size:
        return enlarge(patch, size)
    w = area_weights(n, size)
    rows = np.tensordot(
        w, patch.astype(np.float64), axes=(1, 0)
    )  # (size, n, 3): two matrix products, not one n^2 x size^2 loop
    out = np.einsum("ikc,lk->ilc", rows, w)
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def aligned_box(width: int, height: int, conv: dict) -> tuple[float, float, float]:
    return conv["cx"] * width, conv["cy"] * height, conv["side"] * min(width, height)


def preprocess(img: np.ndarray, box, crop: dict) -> np.ndarray:
    """Face box (cx, cy, side) -> (crops, size, size, 3) float32 normalised, channels last."""
    cx, cy, side = box
    out = []
    for s in crop["scales"]:
        n = max(2, int(round(side * s)))
        x0, y0 = int(round(cx - n / 2)), int(round(cy - n / 2))
        out.append(resize(cut(img, x0, y0, n), crop["size"]))
    x = np.stack(out).astype(np.float32) / 255.0
    return (x - np.float32(crop["mean"])) / np.float32(crop["std"])


class RuntimeProblem(Exception):
    """No TFLite runtime can run here (none installed, or one that does not fit the installed numpy)."""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def runtime_module(name: str = "auto"):
    """(interpreter module, runtime name, version): ai-edge-litert first, else tflite-runtime;
    RuntimeProblem if none fits."""
    import importlib

    problems = []
    for dist in RUNTIMES if name == "auto" else [name]:
        ver = _version(dist)
        if dist == "tflite-runtime" and ver and int(np.__version__.split(".")[0]) >= 2:
            # its extension is built against numpy 1.x: importing it under numpy 2 prints a traceback and fails
            problems.append(
                f'tflite-runtime {ver} needs numpy<2 but numpy {np.__version__} is installed (pip install "numpy<2")'
            )
            continue
        try:
            return importlib.import_module(RUNTIMES[dist]), dist, ver or "unknown"
        except ModuleNotFoundError:
            if name != "auto":
                problems.append(f"{dist} is not installed")
        except Exception as e:  # a broken wheel: say which, in one line
            problems.append(
                f"{dist} {ver} fails to import ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            )
    raise RuntimeProblem("; ".join(problems) if problems else f"no TFLite runtime is installed ({INSTALL})")


def delegate_used(it) -> dict:
    """Which delegate really runs the graph: the interpreter's execution plan has one DELEGATE node per XNNPACK
    partition (the default delegate of both runtimes); none means every op runs as a built-in CPU kernel."""
    try:
        ops = it._get_ops_details()
    except Exception:  # a runtime without the introspection call
        return {"delegate": "unknown"}
    parts = sum(1 for o in ops if o["op_name"] == "DELEGATE")
    return {"delegate": "xnnpack" if parts else "builtin", "partitions": parts}


def open_interpreter(path: Path, threads: int, runtime: str = "auto", delegate: str = "default"):
    """-> (interpreter, info): info names the runtime, its version and the delegate that really ran ("runtime_id")."""
    mod, name, ver = runtime_module(runtime)
    kw = {}
    if delegate == "builtin":  # the built-in kernels only, the default delegate (XNNPACK) not applied
        kw["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = quiet_build(lambda: _allocated(mod.Interpreter(model_path=str(path), num_threads=threads, **kw)))
    info = {"runtime": name, "version": ver, **delegate_used(it)}
    info["runtime_id"] = f"{name}/{info['delegate']}"
    return it, info


def _allocated(it):
    it.allocate_tensors()
    return it


def quiet_build(build):
    """``build()`` with fd 2 captured: the TFLite runtime's "INFO: Created TensorFlow Lite XNNPACK delegate" line is
    dropped, anything else it wrote comes back on stderr."""
    import os
    import tempfile

    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            return build()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            rest = [ln for ln in sink.read().decode("utf-8", "replace").splitlines() if not ln.startswith("INFO: ")]
            if rest:
                sys.stderr.write("\n".join(rest) + "\n")


def interpreter(path: Path, threads: int):
    return open_interpreter(path, threads)[0]


def invoke(it, x: np.ndarray, manifest: dict) -> dict:
    """One face (crops, H, W, C) float -> {output name: raw output tensor} (int8 stays int8)."""
    inp = it.get_input_details()[0]
    shape = list(inp["shape"])
    if manifest["input"]["layout"].endswith("CHW"):
        x = np.moveaxis(x, -1, -3)
    x = x.reshape(shape)
    if inp["dtype"] != np.float32:  # int8 input: q = round(x / scale) + zero_point
        scale, zp = inp["quantization"]
        x = np.clip(np.round(x / scale) + zp, -128, 127)
    it.set_tensor(inp["index"], x.astype(inp["dtype"]))
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()}


def infer(it, x: np.ndarray, manifest: dict) -> dict:
    """One face (crops, H, W, C) float -> {"age", "bins"} following the manifest's input and output sections."""
    return decode(it, invoke(it, x, manifest), manifest)


def decode(it, raw: dict, manifest: dict) -> dict:
    """Raw outputs -> {"age", "bins"}: dequantise, softmax of the logits, then the cascade's last layer, in float."""
    outs = {}
    for d in it.get_output_details():  # find outputs by name, never by position
        v = raw[d["name"]].astype(np.float32)
        if d["dtype"] != np.float32:
            scale, zp = d["quantization"]
            v = (v - zp) * scale
        outs[d["name"]] = v.reshape(-1)
    if "bins" not in outs and "logits" in outs:  # full-integer file ending at W1: softmax in float
        z = np.exp(outs["logits"] - outs["logits"].max())
        outs["bins"] = z / z.sum()
    if "age" not in outs:  # age = sum(bins[i] * w2[i]) + b2, in float
        dec = manifest["output"]["decode"]
        outs["age"] = np.array([outs["bins"] @ np.float32(dec["w2"]) + np.float32(dec["b2"])])
    return {"age": float(outs["age"][0]), "bins": [round(float(b), 6) for b in outs.get("bins", [])]}


def parity_inputs(bundle: Path, manifest: dict) -> np.ndarray:
    """The bundle's stored parity faces (N, S, H, W, 3 uint8) -> float, normalised like preprocess()."""
    crops = np.load(bundle / manifest["parity_set"]["file"], allow_pickle=False)
    c = manifest["crop"]
    return (crops.astype(np.float32) / 255.0 - np.float32(c["mean"])) / np.float32(c["std"])


SIMD = ("sse", "ssse", "avx", "fma", "f16c", "amx", "asimd", "fphp", "i8mm", "sve", "bf16", "neon")


def cpu_simd() -> list[str]:
    """This CPU's SIMD flags (Linux /proc/cpuinfo "flags" or "Features"), which pick a runtime's kernels."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return sorted({f for f in val.split() if f.startswith(SIMD)})
    return []


def golden_site(runtime_id: str, version: str | None) -> dict:
    """Where outputs come from: the runtime and delegate, its version, the machine and its SIMD flags. Golden outputs
    are bit-exact only for the same runtime build on the same instruction set."""
    import platform

    return {"runtime_id": runtime_id, "version": version, "machine": platform.machine(), "simd": cpu_simd()}


def golden_applies(key: str, recorded: dict, site: dict) -> bool:
    """Golden outputs ``key`` were recorded where ``site`` runs (a bundle that does not say where: the same runtime)."""
    rec = recorded.get(key)
    if not isinstance(rec, dict):
        return key == site["runtime_id"]
    return all(rec.get(k) == site[k] for k in ("runtime_id", "version", "machine", "simd"))


def _golden_diff(mine: dict, g: dict):
    """Absolute differences of every raw output value against golden outputs ``g`` (None if names or sizes differ)."""
    ds = []
    for name, t in g.items():
        want = np.asarray(t["values"], dtype=t["dtype"])
        got = mine.get(name)
        if got is None or got.size != want.size:
            return None
        n = len(got)
        ds.append(np.abs(got.astype(np.float64).reshape(n, -1) - want.astype(np.float64).reshape(n, -1)).ravel())
    return np.concatenate(ds) if ds else None


def compare_golden(mine: dict, art: dict, site: dict) -> dict:
    """This runtime's raw outputs vs the artifact's golden ones: bit for bit against those recorded for this runtime,
    version and instruction set; elsewhere the closest golden's difference, as information."""
    golden, recorded = art.get("golden") or {}, art.get("golden_recorded") or {}
    if not golden:
        return {"golden": "none in this bundle"}
    key = next((k for k in golden if golden_applies(k, recorded, site)), None)
    if key is not None:
        d = _golden_diff(mine, golden[key])
        if d is None:
            return {"golden": key, "bit_exact": False, "error": "output name or shape differs from the golden output"}
        return {
            "golden": key,
            "bit_exact": bool((d == 0).all()),
            "max_abs_diff": float(d.max()),
            "values_differing": int((d > 0).sum()),
        }
    near = {k: d for k, g in golden.items() if (d := _golden_diff(mine, g)) is not None}
    k = min(near, key=lambda k: float(near[k].max())) if near else None
    return {
        "golden": f"none for {site['runtime_id']} {site['version']} on {site['machine']} with these SIMD flags",
        "closest": k,
        "max_abs_diff": float(near[k].max()) if k else None,
        "values_differing": int((near[k] > 0).sum()) if k else None,
    }


def golden_outputs(raw: dict) -> dict:
    """Raw output tensors as JSON: integers stay integers, floats keep float32's 9 significant digits."""
    out = {}
    for name, v in raw.items():
        v = np.asarray(v)
        vals = (
            v.astype(int).tolist()
            if np.issubdtype(v.dtype, np.integer)
            else [[float(f"{e:.9g}") for e in r] for r in v.reshape(len(v), -1)]
        )
        out[name] = {"dtype": v.dtype.name, "shape": list(v.shape), "values": vals}
    return out


def self_test(it, info: dict, art: dict, manifest: dict, bundle: Path, record: bool = False) -> dict:
    """The parity faces through this interpreter: raw outputs against the golden outputs, ages against PyTorch's."""
    man = dict(manifest, input=art["input"], output=dict(manifest["output"], **art.get("output", {})))
    raws = [invoke(it, x, man) for x in parity_inputs(bundle, manifest)]
    mine = {k: np.stack([r[k].reshape(-1) for r in raws]) for k in raws[0]}
    ages = np.array([decode(it, r, man)["age"] for r in raws])
    diff = np.abs(ages - np.asarray(manifest["parity_set"]["pytorch_age"], np.float64))
    digest = hashlib.sha256(
        b"".join(k.encode() + np.ascontiguousarray(v).tobytes() for k, v in sorted(mine.items()))
    ).hexdigest()
    site = golden_site(info["runtime_id"], info["version"])
    res = {
        "artifact": art["file"],
        **info,
        **compare_golden(mine, art, site),
        "faces": len(ages),
        "max_abs_age_diff_vs_pytorch": round(float(diff.max()), 6),
        "tolerance_years": art["tolerance_years"],
        "ages": [round(float(v), 6) for v in ages],
        "output_sha256": digest,
    }
    res["passed"] = bool(diff.max() <= art["tolerance_years"] and res.get("bit_exact", True))
    res["site"] = site
    if record:  # the raw outputs as golden outputs of this runtime here (export records an emulated Pi's)
        res["raw"] = golden_outputs(mine)
    return res


def unpinned(bundle: Path, manifest: dict) -> str | None:
    """The first file manifest.json pins (bundle_files: this script, the detector; the artifacts) whose sha256
    differs in the bundle, with why; None when every pin holds."""
    pins = [(f.get("file"), f.get("sha256")) for f in manifest.get("bundle_files") or [] if isinstance(f, dict)]
    pins += [(a.get("file"), a.get("sha256")) for a in manifest.get("artifacts") or [] if isinstance(a, dict)]
    for name, sha in pins:
        p = bundle / str(name)
        if p.resolve().parent != bundle or not p.is_file():
            return f"{name}: missing from the bundle (manifest.json pins it)"
        if hashlib.sha256(p.read_bytes()).hexdigest() != sha:
            return f"{name}: differs from its sha256 in manifest.json (edited after export)"
    return None


def _summary(r: dict) -> str:
    g = (
        (
            "bit-exact"
            if r["bit_exact"]
            else f"NOT bit-exact (max |diff| {r.get('max_abs_diff')}, {r.get('values_differing')} values)"
        )
        if "bit_exact" in r
        else (
            f"{r['golden']}; closest {r['closest']} max |diff| {r['max_abs_diff']} (information)"
            if r.get("closest")
            else r["golden"]
        )
    )
    return (
        f"{r['artifact']} on {r['runtime']} {r['version']} ({r['delegate']}): golden {g}; "
        f"max |age - PyTorch| {r['max_abs_age_diff_vs_pytorch']:.4f} years (tolerance {r['tolerance_years']}): "
        f"{'PASS' if r['passed'] else 'FAIL'}"
    )


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*")
    ap.add_argument("--manifest", default=str(HERE / "manifest.json"))
    ap.add_argument(
        "--artifact",
        help="model file in the bundle (default: the manifest's primary .tflite; --self-test: every .tflite)",
    )
    ap.add_argument("--box", help="face box CX,CY,SIDE in pixels (default: aligned face chip)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--runtime",
        choices=["auto", *RUNTIMES],
        default="auto",
        help="default: ai-edge-litert if installed, else tflite-runtime",
    )
    ap.add_argument(
        "--delegate",
        choices=["default", "builtin"],
        default="default",
        help="builtin: the runtime's built-in kernels without its default delegate (XNNPACK)",
    )
    ap.add_argument(
        "--self-test",
        action="store_true",
        help="run the bundle's parity faces and compare with the golden outputs of this runtime",
    )
    ap.add_argument("--record", action="store_true", help="with --self-test: print the raw outputs too")
    return ap


def _artifacts(a, manifest: dict, bundle: Path) -> tuple[list, str | None]:
    """The .tflite artifacts to run, or why not (a self-test refuses a bundle whose pinned files differ)."""
    bad = unpinned(bundle, manifest) if a.self_test else None
    if bad:
        return [], f"reference_infer: error: {bad}: refusing the self-test"
    arts = [r for r in manifest["artifacts"] if r["file"].endswith(".tflite")]
    if not arts:
        return [], "no .tflite artifact in this bundle"
    if a.artifact and not any(r["file"] == a.artifact for r in arts):
        return [], f"{a.artifact}: not a .tflite artifact of this bundle"
    outside = [t["file"] for t in arts if (bundle / t["file"]).resolve().parent != bundle]
    if outside:  # the manifest names files in its own folder, nothing else
        return [], f"{outside[0]}: not a file of this bundle"
    return arts, None


def main(argv: list[str] | None = None) -> int:
    ap = _parser()
    a = ap.parse_args(argv)
    if not a.images and not a.self_test:
        ap.error("give IMAGE(s) or --self-test")
    try:
        manifest = json.loads(Path(a.manifest).read_text())
    except (OSError, ValueError) as e:
        print(f"reference_infer: error: {a.manifest}: unreadable manifest ({e})", file=sys.stderr)
        return 2
    bundle = Path(a.manifest).resolve().parent
    arts, why = _artifacts(a, manifest, bundle)
    if why:
        print(why, file=sys.stderr)
        return 2
    art = next(r for r in arts if r["file"] == a.artifact) if a.artifact else arts[0]
    try:
        if a.self_test:
            ok = True
            for t in [art] if a.artifact else arts:
                it, info = open_interpreter(bundle / t["file"], a.threads, a.runtime, a.delegate)
                r = self_test(it, info, t, manifest, bundle, a.record)
                print(json.dumps({"self_test": r}))
                print(_summary(r), file=sys.stderr)
                ok &= r["passed"]
            return 0 if ok else 1
        it, info = open_interpreter(bundle / art["file"], a.threads, a.runtime, a.delegate)
    except RuntimeProblem as e:
        print(f"reference_infer: error: {e}", file=sys.stderr)
        return 2
    man = dict(manifest, input=art["input"], output=dict(manifest["output"], **art.get("output", {})))
    rt = {k: info[k] for k in ("runtime_id", "version")}
    for path in a.images:
        img = load_rgb(path)
        box = (
            tuple(float(v) for v in a.box.split(","))
            if a.box
            else aligned_box(img.shape[1], img.shape[0], manifest["face_box"]["aligned_chip"])
        )
        res = infer(it, preprocess(img, box, manifest["crop"]), man)
        print(json.dumps({"image": path, "artifact": art["file"], **res, "runtime": rt}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

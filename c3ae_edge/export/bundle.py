"""``export``: weights -> artifacts for a target -> verified, checksummed bundle, written atomically."""

from __future__ import annotations

import os
import platform
import shutil
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from c3ae_edge.board import board_script
from c3ae_edge.errors import UsageError
from c3ae_edge.export import bundle_check
from c3ae_edge.export.bundle_detector import write_detector
from c3ae_edge.export.manifest import SCHEMA, Manifest
from c3ae_edge.export.quiet import quiet

PARITY_FACES = 8
_BOX_CONVENTION = "square (cx, cy, side) in source pixels, as OpenCV's frontal Haar cascade boxes a face"
_DECODE_FORMULA = (
    "age = output 'age' if present, else sum_i bins[i] * w2[i] + b2 (bins dequantised: (q - zero_point) * scale)"
)
_REPRODUCIBLE = "same inputs + SOURCE_DATE_EPOCH give byte-identical files (ONNX, OpenVINO, TFLite checked in tests)"


def toolchain() -> dict:
    """Versions of python, torch, numpy, every backend's converters (``spec.toolchain``) and c3ae-edge."""
    from c3ae_edge.export.registry import toolchain_packages

    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", *toolchain_packages(), "c3ae-edge"):
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
    return bundle_check.sha256(path)


def inside_out(out: Path, name: str) -> Path:
    """``out / name`` for a name that stays a direct child of ``out`` (names come from TOML files and checkpoints)."""
    p = out / name
    if "/" in name or "\\" in name or name in (".", "..") or p.resolve().parent != out.resolve():
        raise UsageError(f"{name!r}: the bundle would be written outside {out}")
    return p


def _writable(out: Path) -> None:
    """OUT (or the folder it will be created in) must be a writable folder; nothing is created before the bundle is."""
    p = out
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise UsageError(f"{out}: cannot create the output folder ({p} is not a folder)")
    if not os.access(p, os.W_OK | os.X_OK):
        raise UsageError(f"{out}: output folder is not writable")


def _embedded(model_name: str, w_sha: str, spec, decode: dict | None, target: str) -> dict:
    """Key metadata embedded in every artifact (ONNX metadata_props, OpenVINO rt_info, TFLite metadata)."""
    from c3ae_edge.data.crops import ALIGNED_BOX

    d = {
        "schema": SCHEMA,
        "model": model_name,
        "weights_sha256": w_sha,
        "target": target,
        "crop": spec.to_dict(),
        "aligned_chip_box": list(ALIGNED_BOX),
        "bins": {"count": 12, "width": 10},
    }
    if decode:
        d["decode"] = decode
    return d


@dataclass(frozen=True)
class ExportRequest:
    """What to export, as the CLI asks for it. ``signer(folder)`` (c3ae_edge.release.sign) signs SHA256SUMS."""

    target: str
    model: str | None = None
    weights: str | None = None
    out: Path = Path("exports")
    data: str | None = None
    calibration: str | None = None
    n_cal: int = 300
    n_verify: int = 500
    seed: int = 0
    max_delta: float | None = None
    allow_degraded: bool = False
    archive: bool = False
    signer: Callable[[Path], object] | None = None
    verbose: bool = False
    engine: str | None = None  # microcontroller targets: "c99" or "tflm" (default: the target's)
    allow_unverified_runtime: bool = False  # sign even where a runtime the target names cannot verify here
    force: bool = False  # replace a signed bundle, or one built from other weights

    def __post_init__(self):
        object.__setattr__(self, "out", Path(self.out))


@dataclass
class _Job:
    """The request resolved: target, backend, model and its reference ages on the selected faces."""

    req: ExportRequest
    target: object
    backend: object
    final: Path
    model: object
    spec: object
    ck: object
    w_sha: str
    max_delta: float
    cal: object
    ver: object
    ref: np.ndarray
    decode: dict | None
    replaces: str | None = None  # the bundle already at ``final`` (said after the export)


@dataclass
class _Parity:
    pidx: list
    crops: np.ndarray
    faces: object
    bars: dict


def export_bundle(req: ExportRequest | str, log=print, **fields) -> Path:
    """Build, verify and write ``out/<model>-<version>-<target>/``; -> its path. Nothing is left behind on failure.
    ``req`` may also be a target name with ExportRequest's other fields as keywords."""
    if not isinstance(req, ExportRequest):
        req = ExportRequest(req, **fields)
    job = _resolve(req, log)
    made = _missing_parents(req.out)
    tmp = _scratch(req.out, job.final)
    try:
        iso, epoch, reproducible = build_time()
        arts, parity = _convert_all(job, tmp, log)
        bundle_files = _write_extras(tmp, job, parity)
        detector = write_detector(tmp, job.target)
        man = _manifest(job, arts, parity, iso, reproducible, (detector[0], detector[1] + bundle_files))
        man = _write_docs(tmp, job, man, log)
        (tmp / "manifest.json").write_text(man.to_json())
        if _arm64_goldens(tmp, job, man, log):
            (tmp / "manifest.json").write_text(man.to_json())
        _seal(tmp, job.final, req, log)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(made)  # an OUT this export created stays only with a bundle in it
        if isinstance(e, OSError):  # a full disk or a vanished folder: one line naming the output folder
            from c3ae_edge.errors import os_error_line

            raise UsageError(f"{req.out}: {os_error_line(e)}") from None
        raise
    if job.replaces:
        log(f"replaced {job.final}: {job.replaces}")
    if req.archive:
        make_archive(job.final, epoch)
    return job.final


def replace_check(final: Path, w_sha: str, force: bool) -> str | None:
    """May the export replace ``final``? -> what it replaces (said after), None if nothing is there. A folder that is
    not a bundle is never replaced; a signed bundle or one from other weights only with ``force``."""
    from c3ae_edge.errors import DataError
    from c3ae_edge.export.manifest import Manifest

    if not final.exists() and not final.is_symlink():
        return None
    if final.is_symlink() or not final.is_dir() or not (final / "manifest.json").is_file():
        raise UsageError(f"{final}: exists and is not a c3ae-edge bundle; refusing to replace it (move it away)")
    try:
        old = Manifest.read(final)
        old_sha, built = old.model["weights_sha256"], old.build["time"]
    except DataError:
        old_sha, built = "?", "?"
    signed = (final / "SHA256SUMS.minisig").exists()
    what = f"{'a signed' if signed else 'a'} bundle of weights {old_sha[:12]} built {built}"
    if (signed or old_sha != w_sha) and not force:
        why = "it is signed (SHA256SUMS.minisig)" if signed else f"it was built from other weights ({old_sha[:12]})"
        raise UsageError(f"{final}: holds {what}; {why}: refusing to replace it without --force")
    return what


def _missing_parents(out: Path) -> list[Path]:
    """The folders of ``out`` (itself first) that do not exist yet."""
    made, p = [], Path(out)
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    return made


def _remove_empty(made: list[Path]) -> None:
    for p in made:
        try:
            p.rmdir()
        except OSError:  # not empty (another export's bundle), or gone: leave it
            return


def _resolve(req: ExportRequest, log) -> _Job:
    """Target, backend (its imports checked), writable OUT, model, faces and PyTorch's ages on them."""
    import torch

    from c3ae_edge import __version__
    from c3ae_edge.errors import require
    from c3ae_edge.export.backends.common import head_weights
    from c3ae_edge.export.registry import get_backend
    from c3ae_edge.export.targets import load_target, with_engine
    from c3ae_edge.weights import load_model, sha256_file

    target = with_engine(load_target(req.target), req.engine)
    backend = get_backend(target.backend)
    if req.signer is not None and not req.allow_unverified_runtime:
        _signable(backend, target)
    with quiet(req.verbose):  # importing a converter can print (torchao .so load failures)
        for module in backend.spec.requires:
            require(module, backend.spec.extra)
    _writable(req.out)
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    model, spec, ck = load_model(req.weights, req.model)
    w_sha = sha256_file(ck.path)
    final = inside_out(req.out, f"{ck.model}-{__version__}-{target.name}")
    replaces = replace_check(final, w_sha, req.force)  # before the faces are read: refusing costs nothing
    max_delta = target.max_int8_mae_delta if req.max_delta is None else req.max_delta
    cal, ver, ref = _faces(req, target, model, spec, ck, log)
    job = _Job(req, target, backend, final, model, spec, ck, w_sha, max_delta, cal, ver, ref, head_weights(model))
    job.replaces = replaces
    return job


def _signable(backend, target) -> None:
    """A signature vouches for the bundle: refuse to sign one that a runtime its target names cannot verify here."""
    from c3ae_edge.export.crosscheck import runtimes_for

    gaps = [f"{rt.id} ({why})" for rt in runtimes_for(backend, target) if (why := rt.missing())]
    if gaps:
        raise UsageError(
            f"--sign: target {target.name} names runtimes that cannot verify here: {'; '.join(gaps)}; prepare them, "
            "or pass --allow-unverified-runtime to sign a bundle they did not verify"
        )


def _faces(req: ExportRequest, target, model, spec, ck, log):
    """Calibration and verification faces (seeded), and the model's ages on the verification ones."""
    import torch

    from c3ae_edge.export import calibration as calib

    needs_cal = "int8" in target.precisions
    cal, ver = calib.select(spec, ck.path, req.data, req.calibration, req.n_cal, req.n_verify, req.seed, ck=ck)
    if not len(ver.files) or (needs_cal and not len(cal.files)):
        which = "verification" if not len(ver.files) else "calibration"
        raise UsageError(f"no {which} faces selected; nothing converted")
    with torch.no_grad():
        ref = np.concatenate([model(torch.from_numpy(ver.x[i : i + 128])).numpy() for i in range(0, len(ver.x), 128)])
    if not np.isfinite(ref).all():
        raise UsageError(
            f"{ck.path}: the model gives non-finite ages on the verification faces "
            "(the weights overflow); nothing converted"
        )
    embedded = ver.source.startswith(calib.EMBEDDED)  # no data set found: the faces shipped in the package
    where = "the embedded default faces: no data set found" if embedded else f"data {calib.data_root(req.data)}"
    mine = f" ({req.calibration})" if req.calibration and needs_cal else ""
    log(f"faces: calibration {len(cal.files) if needs_cal else 0}{mine}, verification {len(ver.files)} ({where})")
    return cal, ver, ref


def _scratch(out: Path, final: Path) -> Path:
    """A fresh temporary folder beside the bundle (one line naming OUT if it cannot be made)."""
    _catch_ctrl_c()
    tmp = out / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as e:
        from c3ae_edge.errors import os_error_line

        raise UsageError(f"{out}: {os_error_line(e).removeprefix(f'{e.filename}: ')}") from None
    return tmp


def _convert_all(job: _Job, tmp: Path, log) -> tuple[list, _Parity]:
    """Every precision of the target converted into ``tmp`` and verified; -> the manifest's artifact records."""
    from c3ae_edge.export import rewrite
    from c3ae_edge.export.crosscheck import Faces, once
    from c3ae_edge.export.parity import int8_bars

    ver, spec, t = job.ver, job.spec, job.target
    int8_model, rewrites = rewrite.apply(job.model, t.int8_rewrites, ver.x[:1])
    pidx = list(range(min(PARITY_FACES, len(ver.files))))
    crops = np.stack([ver_crops(ver, i, spec) for i in pidx])
    parity_x = spec.normalize(crops)
    faces = Faces(ver.x, ver.ages, job.ref, parity_x[:, 0] if len(spec.scales) == 1 else parity_x)
    parity = _Parity(pidx, crops, faces, int8_bars(job.max_delta, t.max_int8_face_p99, t.max_int8_face_max))
    say_once = once(log)
    arts = [
        _convert(job, tmp, prec, int8_model if prec == "int8" else job.model, rewrites, parity, say_once, log)
        for prec in t.precisions
    ]
    return arts, parity


def _convert(job: _Job, tmp: Path, prec: str, model, rewrites: list, parity: _Parity, say_once, log) -> dict:
    """One artifact: convert, verify under every runtime, log the figures; -> its manifest record."""
    from c3ae_edge.export.convert import convert
    from c3ae_edge.export.crosscheck import verify_artifact

    backend, req, verbose = job.backend, job.req, job.req.verbose
    opts = {"stem": job.ck.model, "metadata": _embedded(job.ck.model, job.w_sha, job.spec, job.decode, job.target.name)}
    t0 = time.perf_counter()
    conv = convert(backend, model, job.ver.x, tmp, prec, job.cal.x, opts, verbose)
    path = conv.path
    v = verify_artifact(
        backend,
        job.target,
        path,
        prec,
        parity.faces,
        parity.bars,
        req.allow_degraded,
        say_once,
        hush=lambda: quiet(verbose),
    )
    m = v["verification"]
    art = {
        "file": path.name,
        "files": list(conv.files),
        "backend": backend.spec.name,
        "precision": prec,
        **({"rewrites": rewrites} if prec == "int8" else {}),
        "bytes": conv.bytes,
        "sha256": sha256(path),
        "input": v["io"]["input"],
        "outputs": v["io"]["outputs"],
        "tolerance_years": v["tolerance_years"],
        "verification": m,
        "runtimes": v["runtimes"],
        "golden": v["golden"],
        "golden_recorded": v["golden_recorded"],
    }
    log(
        f"{path.name}: {art['bytes']:,} bytes, max |age - PyTorch| {m['max_abs_diff_vs_pytorch']:.4f} y, "
        f"MAE {m['mae']:.3f} (PyTorch {m['pytorch_mae']:.3f}, delta {m['mae_delta_vs_fp32']:+.3f}) "
        f"[{time.perf_counter() - t0:.1f}s]"
    )
    for rid, row in v["runtimes"].items():
        if "verification" in row:
            r = row["verification"]
            log(
                f"  under {rid}: |age - PyTorch| p50 {r['p50_abs_diff_vs_pytorch']:.3f} "
                f"p99 {r['p99_abs_diff_vs_pytorch']:.3f} max {r['max_abs_diff_vs_pytorch']:.3f} y, "
                f"MAE delta {r['mae_delta_vs_fp32']:+.3f}"
            )
    return art


def _write_extras(tmp: Path, job: _Job, parity: _Parity) -> list[dict]:
    """Parity crops, the calibration list and, for TFLite bundles, the standalone reference script and the on-board
    runner's statistics (stats.py); -> their ``bundle_files`` entries (the on-board runner and the self-test refuse a
    script that differs from its pin)."""
    from c3ae_edge.export import calibration as calib

    np.save(tmp / "parity_crops.npy", parity.crops, allow_pickle=False)
    calib.write_list(tmp / "calibration_files.txt", job.cal)
    if job.backend.spec.suffix != ".tflite":  # it runs .tflite files; other bundles' READMEs show their runtime
        return []
    ref = tmp / "reference_infer.py"
    shutil.copyfile(board_script("reference_infer.py"), ref)
    if job.backend.spec.name != "tflite":  # a microcontroller bundle's extras remove it (a trunk-only graph)
        return []
    stats = tmp / "stats.py"
    shutil.copyfile(board_script("stats.py"), stats)
    roles = {
        ref: "reference script: preprocessing, decoding, --self-test (numpy + TFLite)",
        stats: "timing statistics of the on-board runner (onboard.py): timed loop, percentiles, CI (numpy)",
    }
    return [{"file": p.name, "sha256": sha256(p), "bytes": p.stat().st_size, "role": r} for p, r in roles.items()]


def _manifest(job: _Job, arts: list, parity: _Parity, iso: str, reproducible: bool, detector: tuple) -> Manifest:
    from c3ae_edge import __version__
    from c3ae_edge.data.crops import ALIGNED_BOX
    from c3ae_edge.export.crosscheck import cpu
    from c3ae_edge.models.twopoint import BIN_CENTRES, BIN_WIDTH

    ck, cal, ver, ref, seed, pidx = job.ck, job.cal, job.ver, job.ref, job.req.seed, parity.pidx
    return Manifest(
        model={
            "name": ck.model,
            "version": __version__,
            "weights_file": Path(ck.path).name,
            "weights_sha256": job.w_sha,
            "params": int(sum(p.numel() for p in job.model.parameters())),
            "trained_on": ck.meta.data,
        },
        target={k: v for k, v in job.target.to_dict().items() if k != "source"},
        primary=arts[0]["file"],
        crop=job.spec.to_dict(),
        normalisation="x[c] = (pixel[c] / 255 - mean[c]) / std[c], RGB",
        face_box={
            "convention": _BOX_CONVENTION,
            "aligned_chip": {"cx": ALIGNED_BOX[0], "cy": ALIGNED_BOX[1], "side": ALIGNED_BOX[2]},
            "detector": detector[0],
        },
        input=arts[0]["input"],
        output={
            "names": [o["name"] for o in arts[0]["outputs"]],
            "bins": {"count": int(len(BIN_CENTRES)), "width": BIN_WIDTH, "centres": [float(c) for c in BIN_CENTRES]},
            "decode": {**(job.decode or {}), "formula": _DECODE_FORMULA},
        },
        artifacts=arts,
        calibration={**cal.identity(seed), "list": "calibration_files.txt"},
        verification={
            **ver.identity(seed),
            "faces": len(ver.files),
            "pytorch_mae": round(float(np.abs(ref - ver.ages).mean()), 4),
            **parity.bars,
            "fp32_parity_years": 0.01,
            "cpu": cpu(),
            "runtimes": list(job.target.runtimes),
        },
        parity_set={
            "file": "parity_crops.npy",
            "shape": list(parity.crops.shape),
            "dtype": "uint8",
            "layout": "N,S,H,W,C (RGB, before normalisation)",
            "images": [ver.files[i] for i in pidx],
            "pytorch_age": [round(float(ref[i]), 6) for i in pidx],
        },
        toolchain=toolchain(),
        build={
            "time": iso,
            "from_source_date_epoch": reproducible,
            "host": f"{platform.system()}-{platform.machine()}",
            "reproducible": _REPRODUCIBLE,
        },
        bundle_files=detector[1],
    )


def _write_docs(tmp: Path, job: _Job, man: Manifest, log) -> Manifest:
    """A backend's extra files and manifest sections, then every generated file (c3ae_model.h, README.md, a
    backend's C sources) from the final manifest, by the functions ``verify`` calls again; -> the final manifest."""
    from c3ae_edge.export import derived
    from c3ae_edge.export.firmware import header, readme

    (tmp / "c3ae_model.h").write_text(header(man))
    (tmp / "README.md").write_text(readme(man))
    if hasattr(job.backend, "bundle_extras"):  # optional hook: extra files (or lines in these two), manifest sections
        man = man.with_sections(job.backend.bundle_extras(tmp, man.to_dict(), log, faces=job.ver))
    derived.write_generated(tmp, man.to_dict(), job.backend)
    return man


def _arm64_goldens(tmp: Path, job: _Job, man: Manifest, log) -> bool:
    """Where the emulated Pi root exists (c3ae_edge.export.arm64), the bundle's own self-test runs there under each
    runtime the target names, and its raw outputs join the golden ones (key ``RUNTIME@BOARD``, with where they were
    recorded); an artifact outside its tolerance there fails the export. -> whether any were added."""
    from c3ae_edge.export import arm64

    if job.target.backend != "tflite" or job.target.arch != "aarch64":
        return False
    if arm64.usable() is not None:
        return False
    _catch_ctrl_c()
    board, added = arm64.board_of(job.target), False
    for rows in arm64.record_goldens(tmp, job.target, log).values():
        for row in rows:
            art = next(a for a in man.artifacts if a["file"] == row["artifact"])
            key = f"{row['runtime_id']}@{board}"
            art["golden"][key], art["golden_recorded"][key] = row["raw"], row["site"]
            added = True
    if added:
        log(f"goldens: recorded on an emulated {board} ({arm64.root_path()})")
    return added


def _seal(tmp: Path, final: Path, req: ExportRequest, log) -> None:
    """SHA256SUMS, ``verify``'s own checks on the bundle (export and verify agree on every bundle written), the
    signature if asked, then the atomic rename into place."""
    from c3ae_edge.errors import VerificationError
    from c3ae_edge.export.verify import verify_bundle

    _sums(tmp)
    try:
        with quiet(req.verbose):
            verify_bundle(tmp)
    except VerificationError as e:
        cap = " (--allow-degraded records the int8 bars, it cannot pass a face beyond the tolerance cap)"
        raise VerificationError(
            f"{str(e).replace(str(tmp), str(final))}: the bundle would fail its own verify; nothing written"
            + (cap if req.allow_degraded else "")
        ) from None
    if req.signer is not None:
        req.signer(tmp)
    _catch_ctrl_c()
    replace_folder(tmp, final)


def _catch_ctrl_c() -> None:
    """Ctrl-C raises KeyboardInterrupt again (so the temporary folder is removed), whatever a library installed; a
    SIGINT that a library swallowed or wrapped stops the export here (c3ae_edge.interrupt)."""
    from c3ae_edge import interrupt

    interrupt.check()


def ver_crops(ver, i: int, spec) -> np.ndarray:
    """uint8 crops (S, H, W, 3) of verification face i, exactly as the model saw them before normalisation."""
    from c3ae_edge.data.datasets import face_box_for
    from c3ae_edge.data.imageio import load_rgb

    s = ver.samples[i]
    img = load_rgb(s.path)
    return spec.crop(img, face_box_for(s, img))


def _sums(folder: Path) -> None:
    names = sorted(
        p.name for p in folder.iterdir() if p.is_file() and p.name not in ("SHA256SUMS", "SHA256SUMS.minisig")
    )
    (folder / "SHA256SUMS").write_text("".join(f"{sha256(folder / n)}  {n}\n" for n in names))


def replace_folder(tmp: Path, final: Path) -> None:
    """Atomic replace: the old bundle (if any) moves aside, the new one is renamed in, the old one is deleted."""
    old = None
    try:
        if final.exists():
            aside = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, aside)  # fails if another export moved it first: then there is nothing of ours to undo
            old = aside
        os.replace(tmp, final)
    except OSError as e:  # another export to the same bundle won the race: keep its bundle (or put the old one back)
        if old is not None and not final.exists():
            try:
                os.replace(old, final)
            except OSError:  # the other export's bundle landed in between: keep it
                pass
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise UsageError(
            f"{final}: another export wrote this bundle at the same time ({e.strerror}); "
            "this one was dropped, run it again"
        ) from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def make_archive(bundle: Path, epoch: int) -> Path:
    """Deterministic ``.tar.gz`` beside the bundle: sorted names, fixed owner and mtime, gzip without a timestamp."""
    import gzip
    import io

    dst = inside_out(bundle.parent, bundle.name + ".tar.gz")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in sorted(bundle.iterdir()):
            info = tarfile.TarInfo(f"{bundle.name}/{p.name}")
            info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = (
                p.stat().st_size,
                epoch,
                0o644,
                0,
                0,
                "",
                "",
            )
            with open(p, "rb") as f:
                tar.addfile(info, f)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buf.getvalue())
    os.replace(tmp, dst)
    return dst

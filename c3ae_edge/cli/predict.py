"""``predict``: ages for photos, folders, video files and a camera, on the verified artifacts (typer only at import)."""

from __future__ import annotations

import json
import sys

import typer

_DETECTOR_HELP = (
    "auto (the artifacts' own detector: BlazeFace short range for the shipped model and TFLite bundles, the OpenCV "
    "cascade for others), blazeface, blazeface-full, haar-fast (faces >= 20% of the shorter side), haar (full "
    "resolution, smaller faces, ~8x slower) or module:Class"
)
_RUNTIME_HELP = (
    "auto (the fastest usable: ai-edge-litert for TFLite artifacts, then tflite-runtime; onnxruntime or OpenVINO for "
    "those bundles), litert, tflite-runtime, onnxruntime, openvino, ai-edge-litert/builtin, or torch (the weights in "
    "PyTorch eager, the 'train' extra)"
)


def register(app: typer.Typer) -> None:
    app.command()(predict)


def predict(
    inputs: list[str] = typer.Argument(None, help="images, folders of images, or video files (.mp4, .avi, ...)"),
    camera: int = typer.Option(None, "--camera", help="read this camera (OpenCV device index) until Ctrl-C"),
    aligned: bool = typer.Option(False, "--aligned", help="each image is an aligned face crop (UTKFace convention)"),
    bundle: str = typer.Option(None, "--bundle", help="run this bundle's artifact, crop spec and detector"),
    runtime: str = typer.Option("auto", "--runtime", help=_RUNTIME_HELP),
    precision: str = typer.Option(None, "--precision", help="the artifact to run (default: the primary, int8)"),
    threads: int = typer.Option(1, "--threads", help="threads for the age network, detector and OpenCV"),
    detector: str = typer.Option("auto", "--detector", help=_DETECTOR_HELP),
    weights: str = typer.Option("default", "--weights", help="a .pt to run in PyTorch instead of the artifacts"),
    model: str = typer.Option(None, "--model", help="another shipped model (runs in PyTorch if no artifacts ship)"),
    detect_every: int = typer.Option(5, "--detect-every", help="video: run the detector every N frames"),
    max_frames: int = typer.Option(None, "--max-frames", help="video/camera: stop after N frames"),
    smooth: int = typer.Option(10, "--smooth", help="video: average each face's last N age measurements"),
    json_out: bool = typer.Option(False, "--json", help="one JSON object per image, or per video frame, on stdout"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="say which runtime, artifact and detector run"),
) -> None:
    """Ages and face boxes (cx, cy, side in source pixels). A bad file gets an error line and the batch goes on
    (exit 1 if any failed); a video or camera prints one line per frame and a summary."""
    from c3ae_edge.errors import UsageError
    from c3ae_edge.predict import AgePredictor
    from c3ae_edge.tracking import TrackerConfig
    from c3ae_edge.video import VideoConfig

    if not inputs and camera is None:
        raise UsageError("give images, folders or videos, or --camera INDEX")
    vcfg = VideoConfig(detect_every=detect_every, max_frames=max_frames, tracker=TrackerConfig(smooth=smooth)).check()
    if threads < 1:
        raise UsageError(f"--threads {threads}: must be >= 1")
    pred = AgePredictor(weights, model, detector, runtime, threads, bundle, precision)
    if not aligned or camera is not None:
        pred.detector  # noqa: B018 - a bad --detector is one usage error up front, not one per image
    if verbose:
        typer.echo(_describe(pred.pipeline.describe()), err=True)
    failed = 0
    if camera is not None:
        _video(pred.pipeline, None, camera, vcfg, json_out)
    for path, err in _expand(inputs or []):
        if err is None and path.suffix.lower() in _video_suffixes():
            failed += _video(pred.pipeline, path, None, vcfg, json_out)
        else:
            failed += _image(pred, path, err, aligned, json_out)
    if failed:
        raise typer.Exit(1)


def _expand(inputs: list[str]):
    from c3ae_edge.predict import expand_each

    return expand_each(inputs)


def _video_suffixes() -> set[str]:
    from c3ae_edge.video import VIDEO_SUFFIXES

    return VIDEO_SUFFIXES


def _describe(d: dict) -> str:
    tol = f", within {d['tolerance_years']} years of PyTorch" if d["artifact"] else ""
    art = f"{d['artifact']} ({d['precision']}{tol})" if d["artifact"] else "the weights in PyTorch eager"
    threads = d["threads"] if d["threads"] else "default"
    src = f" from {d['artifacts']}" if d["artifacts"] else ""
    return f"runtime {d['runtime']} {d['version']}: {art}{src}; {threads} thread(s); detector {d['detector']}"


def _image(pred, path, err: str | None, aligned: bool, json_out: bool) -> int:
    from c3ae_edge.predict import ImageResult

    r = ImageResult(str(path), error=err) if err else pred.predict_image(path, aligned)
    if json_out:
        typer.echo(json.dumps(r.to_dict(), allow_nan=False))
    elif r.error:
        typer.echo(f"c3ae-edge: error: {r.error}", err=True)  # the message names the file
    else:
        for f in r.faces:
            cx, cy, side = f.box
            typer.echo(f"{r.file}\tage {f.age:5.1f}\tbox {cx:.1f},{cy:.1f},{side:.1f}")
    return r.error is not None


def _video(pipeline, path, camera, vcfg, json_out: bool) -> int:
    """One video file or the camera; a file that cannot be read is an error line (exit 1 at the end), a camera
    that cannot be opened stops the command."""
    from c3ae_edge import video
    from c3ae_edge.errors import DataError

    name = f"camera {camera}" if camera is not None else str(path)
    try:
        cap = video.open_capture(None if path is None else str(path), camera)
    except DataError as e:
        if camera is not None:
            raise
        if json_out:
            typer.echo(json.dumps({"file": name, "error": str(e)}))
        else:
            typer.echo(f"c3ae-edge: error: {e}", err=True)
        return 1

    def emit(fr):
        if json_out:
            print(json.dumps({"source": name, **fr.to_dict()}), flush=True)
        else:
            for f in fr.faces:
                cx, cy, side = f["box"]
                print(f"{name}\tframe {fr.index}\ttrack {f['track']}\tage {f['age']:5.1f}\tbox {cx},{cy},{side}")
            sys.stdout.flush()

    summary = video.run(pipeline, cap, name, vcfg, emit, camera=camera is not None)
    if json_out:
        print(json.dumps({"summary": summary.to_dict()}), flush=True)
    typer.echo(summary.line(), err=True)
    return 0

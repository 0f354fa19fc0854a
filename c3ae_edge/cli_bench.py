"""``bench`` command (typer only at import; the work happens in c3ae_edge.bench)."""
from __future__ import annotations

import typer


def _ints(value: str, opt: str) -> list[int]:
    from c3ae_edge.errors import UsageError

    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{opt} {value!r}: expected comma-separated integers") from None
    if not out:
        raise UsageError(f"{opt}: give at least one value")
    return out


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def register(app: typer.Typer) -> None:
    @app.command(help="Time models and exported artifacts the same way on this machine (Table 3 of the paper, and beyond); "
                      "--merge combines bench JSON files from several machines into one table.")
    def bench(
        files: list[str] = typer.Argument(None, help="with --merge: bench JSON files (this machine, GPU, on-board runner)"),
        models: str = typer.Option(None, "--models", help="comma-separated models (default: the paper's Table 3 six + c3ae_full)"),
        backends: str = typer.Option(None, "--backends", help="torch,onnx,openvino,tflite (default: torch + every installed backend)"),
        precision: str = typer.Option("fp32,int8", "--precision", help="fp32,int8 (also fp16; bf16 = OpenVINO's bf16 execution of the fp32 IR)"),
        runs: int = typer.Option(2000, "--runs", help="timed runs per row"),
        warmup: int = typer.Option(100, "--warmup", help="untimed runs before timing"),
        threads: str = typer.Option("1", "--threads", help="threads per runtime, comma-separated for several rows (e.g. 1,2)"),
        batch: str = typer.Option("1", "--batch", help="batch sizes, comma-separated (1 = single-image forward)"),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda (PyTorch CUDA eager, CUDA Graphs, fp16/bf16)"),
        data: str = typer.Option(None, "--data", help="face data root holding utkface/ (default $C3AE_DATA or ../shared/data)"),
        json_file: str = typer.Option(None, "--json", help="write the results JSON here"),
        markdown: str = typer.Option(None, "--markdown", help="write the markdown report here"),
        plot: str = typer.Option(None, "--plot", help="write the PNG plot here (default: next to --markdown or --json)"),
        accuracy: str = typer.Option(None, "--accuracy", help="MAE per model from the common recipe (default bench/peers/mae.json if present)"),
        merge: bool = typer.Option(False, "--merge", help="combine the given bench JSON files into one table instead of running"),
        from_json: str = typer.Option(None, "--from-json", help="re-render the markdown/PNG of an earlier bench JSON instead of running"),
        remote: str = typer.Option(None, "--remote", help="user@host: copy the on-board runner and --bundle over ssh, run it there, collect the JSON"),
        bundle: str = typer.Option(None, "--bundle", help="with --remote: the bundle folder to run on the board"),
        e2e: int = typer.Option(60, "--e2e", help="photo-to-age rows: this many FG-NET photos, also made into 640x480 and 1280x720 frames (0: none)"),
        detector: str = typer.Option("auto", "--detector", help="face detector of the photo-to-age rows (auto, blazeface, blazeface-full, haar-fast, haar, module:Class)"),
        write_runner: str = typer.Option(None, "--write-runner", help="copy the standalone on-board runner (onboard.py) into this folder and exit"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    ) -> None:
        from pathlib import Path

        from c3ae_edge.errors import UsageError

        if write_runner:
            import shutil

            from c3ae_edge.bench import onboard

            Path(write_runner).mkdir(parents=True, exist_ok=True)
            from c3ae_edge import facefind

            dst = shutil.copy(onboard.__file__, Path(write_runner) / "onboard.py")
            shutil.copy(facefind.__file__, Path(write_runner) / "facefind.py")  # the photo-to-age rows' detector
            typer.echo(f"wrote {dst} (and facefind.py beside it)")
            return
        from c3ae_edge.bench import report

        if merge or files:
            if not merge:
                raise UsageError("JSON files are only taken with --merge")
            if not files:
                raise UsageError("--merge needs bench JSON files: c3ae-edge bench --merge a.json b.json ...")
            doc = report.merge([Path(f) for f in files])
        elif from_json:
            doc = report.load_doc(Path(from_json))
        elif remote:
            from c3ae_edge.bench.remote import run_remote

            if not bundle:
                raise UsageError("--remote needs --bundle DIR (a bundle written by `c3ae-edge export`)")
            doc = run_remote(remote, Path(bundle), runs, warmup, _ints(threads, "--threads")[0])
        else:
            from c3ae_edge.bench.harness import BenchConfig, command_line, installed_backends, run
            from c3ae_edge.bench.paper import DEFAULT_MODELS

            cfg = BenchConfig(models=_names(models) or list(DEFAULT_MODELS), backends=_names(backends) or installed_backends(),
                              precisions=_names(precision) or ["fp32"], runs=runs, warmup=warmup, threads=_ints(threads, "--threads"),
                              batches=_ints(batch, "--batch"), device=device, data=data, command=command_line(),
                              e2e=e2e if device == "cpu" else 0, detector=detector)
            doc = run(cfg, quiet=quiet)
        acc = report.load_accuracy(Path(accuracy) if accuracy else None)
        if acc:
            doc["accuracy"] = acc
        _write_reports(doc, json_file, markdown, plot, files if merge else [from_json] if from_json else [])


def _write_reports(doc: dict, json_file: str | None, markdown: str | None, plot: str | None, sources: list[str]) -> None:
    """Render first, then write every output by temp file + rename: a malformed document writes nothing."""
    import json
    import os
    from pathlib import Path

    from c3ae_edge.bench import report
    from c3ae_edge.errors import DataError

    png = plot or (str(Path(markdown or json_file).with_suffix(".png")) if (markdown or json_file) else None)
    outs: dict[str, str] = {json_file: json.dumps(doc, indent=1) + "\n"} if json_file else {}
    made: list[tuple[Path, Path]] = []
    tmp_png = None
    try:
        md = report.markdown(doc, png_name=Path(png).name if png else None)
        if markdown:
            outs[markdown] = md
        if png:
            Path(png).parent.mkdir(parents=True, exist_ok=True)
            tmp_png = Path(png).with_name(f".{Path(png).name}.tmp-{os.getpid()}.png")
            if report.plot(doc, tmp_png):
                made.append((tmp_png, Path(png)))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as e:
        if tmp_png is not None:
            tmp_png.unlink(missing_ok=True)
        if json_file and not sources:  # a fresh run: keep its measurements even if the report cannot be drawn
            Path(json_file).parent.mkdir(parents=True, exist_ok=True)
            Path(json_file).write_text(outs[json_file])
        raise DataError(f"{', '.join(sources) or 'bench results'}: malformed bench rows ({type(e).__name__}: {str(e)[:80]})") from None
    try:
        for dst, text in outs.items():
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(dst).with_name(f".{Path(dst).name}.tmp-{os.getpid()}")
            made.append((tmp, Path(dst)))
            tmp.write_text(text)
    except OSError:
        for tmp, _ in made:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, dst in made:
        os.replace(tmp, dst)
        typer.echo(f"wrote {dst}", err=True)
    if not (json_file or markdown):
        typer.echo(md)

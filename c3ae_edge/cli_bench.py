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
        detector: str = typer.Option("haar-fast", "--detector", help="face detector of the photo-to-age rows (haar-fast, haar, module:Class)"),
        write_runner: str = typer.Option(None, "--write-runner", help="copy the standalone on-board runner (onboard.py) into this folder and exit"),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
    ) -> None:
        import json
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
        if json_file:
            Path(json_file).parent.mkdir(parents=True, exist_ok=True)
            Path(json_file).write_text(json.dumps(doc, indent=1) + "\n")
            typer.echo(f"wrote {json_file}", err=True)
        png = plot or (str(Path(markdown or json_file).with_suffix(".png")) if (markdown or json_file) else None)
        if png and report.plot(doc, Path(png)):
            typer.echo(f"wrote {png}", err=True)
        md = report.markdown(doc, png_name=Path(png).name if png else None)
        if markdown:
            Path(markdown).parent.mkdir(parents=True, exist_ok=True)
            Path(markdown).write_text(md)
            typer.echo(f"wrote {markdown}", err=True)
        if not (json_file or markdown):
            typer.echo(md)

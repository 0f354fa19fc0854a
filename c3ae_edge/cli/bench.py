"""``bench run|merge|render|remote|write-runner`` (typer only at import; the work happens in c3ae_edge.bench).

Today's single-command spellings (``bench --merge``, ``--from-json``, ``--remote``, ``--write-runner``, and ``bench``
with no sub-command = run) keep working for one release through a hidden ``legacy`` command that calls the same
functions and prints one deprecation line naming the new spelling.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import typer
from typer.core import TyperGroup

LEGACY = "legacy"


class _BenchGroup(TyperGroup):
    """Arguments that do not start with a sub-command name go to the hidden legacy command (the old spellings)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [LEGACY, *args]
        return super().parse_args(ctx, args)


HELP = (
    "Time models and exported artifacts the same way on this machine (Table 3 of the paper, "
    "and beyond), merge bench JSON files from several machines, re-render reports, run on a "
    "board."
)


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


# options shared by several sub-commands (one definition, one help text)
def _json_opt():
    return typer.Option(None, "--json", help="write the results JSON here")


def _markdown_opt():
    return typer.Option(None, "--markdown", help="write the markdown report here")


def _plot_opt():
    return typer.Option(None, "--plot", help="write the PNG plot here (default: next to --markdown or --json)")


def _accuracy_opt():
    return typer.Option(
        None,
        "--accuracy",
        help="MAE per model from the common recipe (default c3ae_edge/bench/tables/peers_mae.json if present)",
    )


def _runs_opt():
    return typer.Option(2000, "--runs", help="timed runs per row")


def _warmup_opt():
    return typer.Option(100, "--warmup", help="untimed runs before timing")


def _variants_opt():
    return typer.Option(
        None,
        "--variants",
        help="PyTorch forms to time, FORM[+graph][+cl]:PRECISION or a set (default, fast-latency, fast-throughput); "
        "default with --device cuda; on the CPU, times these instead of exported artifacts (docs/bench.md)",
    )


def _budget_opt():
    return typer.Option(
        None, "--budget", help="seconds of timed forwards per row before it may stop (default 20, cuda 0.5; 0: none)"
    )


def _time_limit_opt():
    return typer.Option(
        None,
        "--time-limit",
        help="PyTorch-forms run: no row after the first starts after this many seconds (cuda default 150)",
    )


# ---------------------------------------------------------------- the work of each sub-command


@dataclass
class RunArgs:
    """``bench run``'s options as given (None: the device's default)."""

    models: str | None = None
    backends: str | None = None
    precision: str = "fp32,int8"
    runs: int = 2000
    warmup: int = 100
    threads: str = "1"
    batch: str | None = None
    device: str = "cpu"
    data: str | None = None
    e2e: int | None = None
    detector: str = "auto"
    quiet: bool = False
    budget: float | None = None
    min_runs: int | None = None
    time_limit: float | None = None
    variants: str | None = None
    json_file: str | None = None


def do_run(a: RunArgs) -> dict:
    from c3ae_edge.bench.config import BenchConfig, installed_backends
    from c3ae_edge.bench.cuda import GPU_BATCHES
    from c3ae_edge.bench.harness import command_line, run
    from c3ae_edge.bench.paper import DEFAULT_MODELS

    note, e2e = None, a.e2e
    if e2e is None:  # not asked for: photo-to-age rows where FG-NET's photos are here, else none (one line says so)
        e2e, note = _default_e2e(a.data)
    default_batches = ",".join(map(str, GPU_BATCHES)) if a.device == "cuda" else "1"
    cfg = BenchConfig(
        models=_names(a.models) or list(DEFAULT_MODELS),
        backends=_names(a.backends) or installed_backends(),
        precisions=_names(a.precision) or ["fp32"],
        runs=a.runs,
        warmup=a.warmup,
        threads=_ints(a.threads, "--threads"),
        batches=_ints(a.batch or default_batches, "--batch"),
        device=a.device,
        data=a.data,
        command=command_line(),
        e2e=e2e if a.device == "cpu" and not a.variants else 0,
        detector=a.detector,
        budget_s=a.budget,
        min_runs=a.min_runs,
        time_limit_s=a.time_limit,
        variants=_names(a.variants),
    )
    cfg.resolve().check()  # a bad argument is the only line printed
    if note and not a.quiet and not cfg.forms_run:
        typer.echo(note, err=True)
    doc = run(cfg, quiet=a.quiet, out=a.json_file)
    if doc.get("partial"):
        typer.echo(f"c3ae-edge: partial run: {doc['stopped']} (the files say so)", err=True)
    return doc


def _default_e2e(data: str | None) -> tuple[int, str | None]:
    from c3ae_edge.export.calibration import data_root

    root = data_root(data) / "fgnet"
    if (root / "labels.csv").is_file():
        return 60, None
    return 0, f"photo-to-age rows skipped: no FG-NET photos in {root} (--data DIR, or --e2e N to insist)"


def do_merge(files: list[str]) -> dict:
    from pathlib import Path

    from c3ae_edge.bench import report
    from c3ae_edge.errors import UsageError

    if not files:
        raise UsageError("merge needs bench JSON files: c3ae-edge bench merge a.json b.json ...")
    return report.merge([Path(f) for f in files])


def do_render(file: str) -> dict:
    from pathlib import Path

    from c3ae_edge.bench import report

    return report.load_doc(Path(file))


def do_remote(host: str, bundle: str | None, runs: int, warmup: int, threads: int) -> dict:
    from pathlib import Path

    from c3ae_edge.bench.remote import run_remote
    from c3ae_edge.errors import UsageError

    if not bundle:
        raise UsageError("remote needs --bundle DIR (a bundle written by `c3ae-edge export`)")
    return run_remote(host, Path(bundle), runs, warmup, threads)


def do_write_runner(folder: str) -> None:
    import shutil
    from pathlib import Path

    from c3ae_edge.board import RUNNER_SCRIPTS, board_script

    Path(folder).mkdir(parents=True, exist_ok=True)
    # stats.py: its timing statistics; facefind.py: the photo-to-age rows' OpenCV detector (a bundle that names
    # BlazeFace carries blazeface.py and its model itself)
    for name in RUNNER_SCRIPTS:
        shutil.copy(board_script(name), Path(folder) / name)
    typer.echo(f"wrote {Path(folder) / RUNNER_SCRIPTS[0]} (and {', '.join(RUNNER_SCRIPTS[1:])} beside it)")


def _report(
    doc: dict, accuracy: str | None, json_file: str | None, markdown: str | None, plot: str | None, sources: list[str]
) -> None:
    from pathlib import Path

    from c3ae_edge.bench import report

    acc = report.load_accuracy(Path(accuracy) if accuracy else None)
    if acc:
        doc["accuracy"] = acc
    _write_reports(doc, json_file, markdown, plot, sources)


# ---------------------------------------------------------------- sub-commands


def _bench_backends() -> list[str]:
    from c3ae_edge.export.registry import bench_backends  # backend modules import no heavy library

    return bench_backends()


def run_cmd(
    models: str = typer.Option(
        None, "--models", help="comma-separated models (default: the paper's Table 3 six + c3ae_full)"
    ),
    backends: str = typer.Option(
        None, "--backends", help=f"torch,{','.join(_bench_backends())} (default: torch + every installed backend)"
    ),
    precision: str = typer.Option(
        "fp32,int8", "--precision", help="fp32,int8 (also fp16; bf16 = OpenVINO's bf16 execution of the fp32 IR)"
    ),
    runs: int = _runs_opt(),
    warmup: int = _warmup_opt(),
    threads: str = typer.Option(
        "1", "--threads", help="threads per runtime, comma-separated for several rows (e.g. 1,2)"
    ),
    batch: str = typer.Option(
        None, "--batch", help="batch sizes, comma-separated (1 = single-image forward; default 1, cuda: 1,256,4096)"
    ),
    device: str = typer.Option(
        "cpu", "--device", help="cpu or cuda (PyTorch eager, CUDA graphs, fused and compiled forms, fp16/bf16)"
    ),
    variants: str = _variants_opt(),
    budget: float = _budget_opt(),
    min_runs: int = typer.Option(None, "--min-runs", help="forwards a row times before its budget may stop it"),
    time_limit: float = _time_limit_opt(),
    data: str = typer.Option(
        None, "--data", help="face data root holding utkface/ (default $C3AE_DATA or ../shared/data)"
    ),
    e2e: int = typer.Option(
        None,
        "--e2e",
        help="photo-to-age rows: this many FG-NET photos, also made into 640x480 and 1280x720 frames (0: none; "
        "default 60 where FG-NET is found)",
    ),
    detector: str = typer.Option(
        "auto",
        "--detector",
        help="face detector of the photo-to-age rows (auto, blazeface, blazeface-full, haar-fast, haar, module:Class)",
    ),
    json_file: str = _json_opt(),
    markdown: str = _markdown_opt(),
    plot: str = _plot_opt(),
    accuracy: str = _accuracy_opt(),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress output"),
) -> None:
    args = RunArgs(models, backends, precision, runs, warmup, threads, batch, device, data, e2e, detector, quiet)
    args.budget, args.min_runs, args.time_limit, args.variants = budget, min_runs, time_limit, variants
    args.json_file = json_file
    _report(do_run(args), accuracy, json_file, markdown, plot, [])


def merge_cmd(
    files: list[str] = typer.Argument(..., help="bench JSON files"),
    json_file: str = _json_opt(),
    markdown: str = _markdown_opt(),
    plot: str = _plot_opt(),
    accuracy: str = _accuracy_opt(),
) -> None:
    _report(do_merge(files), accuracy, json_file, markdown, plot, files)


def render_cmd(
    file: str = typer.Argument(..., help="a bench JSON file"),
    json_file: str = typer.Option(None, "--json", help="write the document (with --accuracy folded in) here"),
    markdown: str = _markdown_opt(),
    plot: str = _plot_opt(),
    accuracy: str = _accuracy_opt(),
) -> None:
    _report(do_render(file), accuracy, json_file, markdown, plot, [file])


def remote_cmd(
    host: str = typer.Argument(..., help="user@host of the board"),
    bundle: str = typer.Option(
        ..., "--bundle", help="the bundle folder (written by `c3ae-edge export`) to run on the board"
    ),
    runs: int = _runs_opt(),
    warmup: int = _warmup_opt(),
    threads: int = typer.Option(1, "--threads", min=1, help="threads of the board's runtime"),
    json_file: str = _json_opt(),
    markdown: str = _markdown_opt(),
    plot: str = _plot_opt(),
    accuracy: str = _accuracy_opt(),
) -> None:
    _report(do_remote(host, bundle, runs, warmup, threads), accuracy, json_file, markdown, plot, [])


def write_runner_cmd(
    folder: str = typer.Argument(..., help="folder to write onboard.py, stats.py and facefind.py into"),
) -> None:
    do_write_runner(folder)


# ---------------------------------------------------------------- the old spellings, for one release


def legacy_cmd(
    files: list[str] = typer.Argument(None),
    models: str = typer.Option(None, "--models"),
    backends: str = typer.Option(None, "--backends"),
    precision: str = typer.Option("fp32,int8", "--precision"),
    runs: int = typer.Option(2000, "--runs"),
    warmup: int = typer.Option(100, "--warmup"),
    threads: str = typer.Option("1", "--threads"),
    batch: str = typer.Option(None, "--batch"),
    device: str = typer.Option("cpu", "--device"),
    data: str = typer.Option(None, "--data"),
    json_file: str = typer.Option(None, "--json"),
    markdown: str = typer.Option(None, "--markdown"),
    plot: str = typer.Option(None, "--plot"),
    accuracy: str = typer.Option(None, "--accuracy"),
    merge: bool = typer.Option(False, "--merge"),
    from_json: str = typer.Option(None, "--from-json"),
    remote: str = typer.Option(None, "--remote"),
    bundle: str = typer.Option(None, "--bundle"),
    e2e: int = typer.Option(None, "--e2e"),
    detector: str = typer.Option("auto", "--detector"),
    write_runner: str = typer.Option(None, "--write-runner"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """``c3ae-edge bench [--merge|--from-json|--remote|--write-runner] ...``: the same work, then a deprecation line."""
    from c3ae_edge.errors import UsageError

    if write_runner:
        do_write_runner(write_runner)
        return _deprecated("--write-runner DIR", "write-runner DIR")
    if merge or files:
        if not merge:
            raise UsageError("JSON files are only taken with --merge (c3ae-edge bench merge FILES...)")
        if not files:
            raise UsageError("--merge needs bench JSON files: c3ae-edge bench merge a.json b.json ...")
        _report(do_merge(files), accuracy, json_file, markdown, plot, files)
        return _deprecated("--merge FILES...", "merge FILES...")
    if from_json:
        _report(do_render(from_json), accuracy, json_file, markdown, plot, [from_json])
        return _deprecated("--from-json FILE", "render FILE")
    if remote:
        if not bundle:
            raise UsageError("--remote needs --bundle DIR (a bundle written by `c3ae-edge export`)")
        doc = do_remote(remote, bundle, runs, warmup, _ints(threads, "--threads")[0])
        _report(doc, accuracy, json_file, markdown, plot, [])
        return _deprecated("--remote HOST", "remote HOST")
    args = RunArgs(models, backends, precision, runs, warmup, threads, batch, device, data, e2e, detector, quiet)
    args.json_file = json_file
    _report(do_run(args), accuracy, json_file, markdown, plot, [])
    return _deprecated("with no sub-command", "run")


def _deprecated(old: str, new: str) -> None:
    """One line on stderr, after the work succeeded (a refused command still prints only its one error line)."""
    print(
        f"c3ae-edge: `c3ae-edge bench {old}` is deprecated and goes in the next release; use `c3ae-edge bench {new}`",
        file=sys.stderr,
    )


SUBCOMMANDS = (  # name, function, help; the hidden legacy command is added last
    ("run", run_cmd, "Time every model x backend x precision x threads x batch on this machine, the same way."),
    (
        "merge",
        merge_cmd,
        "Combine bench JSON files from several machines (this one, a GPU, the on-board runner) into one table.",
    ),
    ("render", render_cmd, "Re-render the markdown report and PNG of an earlier bench JSON file."),
    (
        "remote",
        remote_cmd,
        "Copy the on-board runner and a bundle to a board over ssh, run it there, collect the JSON.",
    ),
    (
        "write-runner",
        write_runner_cmd,
        "Copy the standalone on-board runner (onboard.py, stats.py, facefind.py) into a folder.",
    ),
)


def register(app: typer.Typer) -> None:
    bench = typer.Typer(cls=_BenchGroup, no_args_is_help=False, add_completion=False, help=HELP)
    for name, fn, text in SUBCOMMANDS:
        bench.command(name, help=text)(fn)
    bench.command(LEGACY, hidden=True)(legacy_cmd)
    app.add_typer(bench, name="bench")


def _write_reports(
    doc: dict, json_file: str | None, markdown: str | None, plot: str | None, sources: list[str]
) -> None:
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
    except OSError as e:  # the picture's folder is read-only or full: name the picture, not our temporary file
        if tmp_png is not None and tmp_png.is_file():
            tmp_png.unlink()
        raise OSError(e.errno, e.strerror, str(png)) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError) as e:
        if tmp_png is not None:
            tmp_png.unlink(missing_ok=True)
        if json_file and not sources:  # a fresh run: keep its measurements even if the report cannot be drawn
            Path(json_file).parent.mkdir(parents=True, exist_ok=True)
            Path(json_file).write_text(outs[json_file])
        raise DataError(
            f"{', '.join(sources) or 'bench results'}: malformed bench rows ({type(e).__name__}: {str(e)[:80]})"
        ) from None
    dst = None
    try:
        for dst, text in outs.items():
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(dst).with_name(f".{Path(dst).name}.tmp-{os.getpid()}")
            tmp.write_text(text)
            made.append((tmp, Path(dst)))
    except OSError as e:  # one line naming the user's file, never our temporary one (main prints it, exit 1)
        for tmp, _ in made:
            tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(dst)) from None
    for tmp, dst in made:
        os.replace(tmp, dst)
        typer.echo(f"wrote {dst}", err=True)
    if not (json_file or markdown):
        typer.echo(md)

"""``c3ae-edge predict`` as a user runs it (a new process per command), before and after, side by side in one run:

    python bench/scripts/predict_speed.py [--photos 200] [--rounds 3] [--before-ref main] [--core-venv DIR]
        [--json out.json] [--markdown out.md]

- photos/s: N FG-NET photos in one command, minus the same command on one photo (start-up), per photo;
- the same beside two busy processes (a board that also captures, encodes, talks to the network);
- first result: process start to the first line of output, one photo (``--core-venv``: the torch-free install too);
- video: a 640x480 clip made from FG-NET photos with OpenCV's VideoWriter, tracking on; the summary's ms per frame.

"before" is the predict of ``--before-ref`` (a git ref, e.g. the commit before this pipeline), run from a snapshot of
that tree with this venv's packages: PyTorch eager with its default threads. "after" is this checkout's default
(the shipped int8 artifact, ai-edge-litert, 1 thread); "torch 1 thread" is ``--runtime torch``. The variants are
interleaved round by round, so a shared machine's load hits them alike; ratios are per round, then the median.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
NEUTRAL = Path(tempfile.gettempdir())  # every command runs here: a checkout in the working folder would shadow its code
sys.path.insert(0, str(ROOT))
from c3ae_edge.board import onboard  # noqa: E402


def snapshot(ref: str, dst: Path) -> Path:
    """The tree of git ``ref`` unpacked into ``dst`` (read from the repository, nothing checked out)."""
    dst.mkdir(parents=True)
    arch = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=arch, check=True)
    return dst


def timed(cmd: list[str], env: dict) -> tuple[float, float, str, float]:
    """(seconds to the first line of stdout, seconds to exit, stdout, CPU seconds the process used: what a busy
    machine's waits leave out)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=NEUTRAL)
    first = p.stdout.readline()
    t_first = time.perf_counter() - t0
    rest = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return t_first, time.perf_counter() - t0, first + rest, ru.ru_utime + ru.ru_stime


def variants(before: Path | None, core_venv: Path | None) -> dict[str, tuple[list[str], dict]]:
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OMP_NUM_THREADS")}
    ours = [sys.executable, "-m", "c3ae_edge.cli", "predict", "--json"]
    here = {**base, "PYTHONPATH": str(ROOT)}
    out = {"after (default)": (ours, here), "torch, 1 thread (--runtime torch)": (ours + ["--runtime", "torch"], here)}
    if before is not None:
        out["before (" + before.name + ")"] = (
            [sys.executable, "-m", "c3ae_edge.cli", "predict", "--json"],
            {**base, "PYTHONPATH": str(before)},
        )
    if core_venv is not None:
        out["after, torch-free install"] = ([str(core_venv / "bin" / "c3ae-edge"), "predict", "--json"], base)
    return out


def per_photo(cmd: list[str], env: dict, photos: list[str]) -> dict:
    """Start-up (one photo) and per photo after it (all photos)."""
    f1, t1, _, c1 = timed(cmd + photos[:1], env)
    _, tn, out, cn = timed(cmd + photos, env)
    per, cpu = (tn - t1) / (len(photos) - 1), (cn - c1) / (len(photos) - 1)
    return {
        "first_result_s": f1,
        "one_photo_s": t1,
        "one_photo_cpu_s": c1,
        "all_s": tn,
        "per_photo_s": per,
        "per_photo_cpu_s": cpu,
        "faces": out.count('"age"'),
    }


class Busy:
    """Two processes spinning on a core each, for the duration of a ``with`` block. Each in its own session, as a
    board's other services are: with the kernel's autogroup scheduling a session shares its CPU among its own
    processes, so spinners in ours would take the measured command's share instead of competing beside it."""

    def __enter__(self):
        spin = "while True: pass"
        self.procs = [subprocess.Popen([sys.executable, "-c", spin], start_new_session=True) for _ in range(2)]
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()


def make_clip(path: Path, photos: list[str], per_photo: int = 30) -> None:
    import cv2

    from c3ae_edge.bench.e2e import make_frame
    from c3ae_edge.data.imageio import load_rgb

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25, (640, 480))
    for p in photos:
        fr = make_frame(load_rgb(p), (640, 480))[0]
        for i in range(per_photo):
            w.write(cv2.cvtColor(np.roll(fr, 2 * i, axis=1), cv2.COLOR_RGB2BGR))
    w.release()


def video_ms(cmd: list[str], env: dict, clip: Path) -> float:
    out = timed(cmd + [str(clip)], env)[2]
    return json.loads(out.strip().splitlines()[-1])["summary"]["ms_per_frame"]


def measure(a, photos: list[str], vs: dict, clip: Path) -> dict:
    rounds: list[dict] = []
    for r in range(a.rounds):
        row = {"idle": {}, "busy": {}, "video_ms_per_frame": {}}
        for name, (cmd, env) in vs.items():
            row["idle"][name] = per_photo(cmd, env, photos)
        with Busy():
            for name, (cmd, env) in vs.items():
                if "torch-free" not in name:
                    row["busy"][name] = per_photo(cmd, env, photos)
        for name, (cmd, env) in vs.items():
            if not name.startswith("before"):
                row["video_ms_per_frame"][name] = video_ms(cmd, env, clip)
        row["load_average"] = os.getloadavg()
        rounds.append(row)
        print(f"round {r + 1}: " + json.dumps(summarise([row])), file=sys.stderr)
    return {"rounds": rounds, "summary": summarise(rounds)}


def summarise(rounds: list[dict]) -> dict:
    """Medians over rounds; ratios per round (same round, same load), then their median."""
    names = list(rounds[0]["idle"])
    med = lambda xs: float(np.median(xs))  # noqa: E731
    out = {n: {"photos_per_s_idle": med([1 / r["idle"][n]["per_photo_s"] for r in rounds])} for n in names}
    for n in names:
        out[n]["ms_per_photo_idle"] = med([1e3 * r["idle"][n]["per_photo_s"] for r in rounds])
        out[n]["first_result_s"] = med([r["idle"][n]["first_result_s"] for r in rounds])
        out[n]["one_photo_cpu_s"] = med([r["idle"][n]["one_photo_cpu_s"] for r in rounds])
        out[n]["cpu_ms_per_photo_idle"] = med([1e3 * r["idle"][n]["per_photo_cpu_s"] for r in rounds])
        if n in rounds[0]["busy"]:
            out[n]["ms_per_photo_busy"] = med([1e3 * r["busy"][n]["per_photo_s"] for r in rounds])
            out[n]["busy_over_idle"] = med([r["busy"][n]["per_photo_s"] / r["idle"][n]["per_photo_s"] for r in rounds])
        if n in rounds[0]["video_ms_per_frame"]:
            out[n]["video_ms_per_frame"] = med([r["video_ms_per_frame"][n] for r in rounds])
    before = next((n for n in names if n.startswith("before")), None)
    if before:
        after = "after (default)"
        out["after_vs_before_photos_per_s"] = med(
            [r["idle"][before]["per_photo_s"] / r["idle"][after]["per_photo_s"] for r in rounds]
        )
    return out


def markdown(doc: dict) -> str:
    s, env = doc["summary"], doc["environment"]
    names = [n for n in s if isinstance(s[n], dict)]
    cols = (
        "photos_per_s_idle",
        "ms_per_photo_idle",
        "cpu_ms_per_photo_idle",
        "ms_per_photo_busy",
        "busy_over_idle",
        "first_result_s",
        "one_photo_cpu_s",
    )
    L = [
        "# predict, before and after (one run, interleaved)",
        "",
        f"Command: `{doc['command']}`. CPU: {env['cpu']['model']} ({', '.join(env['cpu'].get('flags', []))}), "
        f"{env['cpu']['logical_cores']} logical cores; load average {doc['load_average_start']} at the start, "
        f'{doc["load_average_end"]} at the end: a shared machine, so "idle" columns are the machine as found and '
        "the busy ones add two spinning processes to that; ratios within a round are what hold, and the CPU columns "
        "(the process's own CPU time, os.wait4) leave the waits out. "
        f"{doc['photos']} FG-NET photos per command; {doc['n_rounds']} rounds; medians.",
        "",
        "| variant | photos/s | ms per photo | CPU ms per photo | ms per photo, 2 busy processes | busy / idle "
        "| first result s | CPU s, one-photo command | video ms per 640x480 frame |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in names:
        v = s[n]
        cells = [f"{v[c]:.2f}" if c in v else "-" for c in cols]
        vid = f"{v['video_ms_per_frame']:.2f}" if "video_ms_per_frame" in v else "-"
        L.append(f"| {n} | " + " | ".join(cells) + f" | {vid} |")
    if "after_vs_before_photos_per_s" in s:
        L += [
            "",
            f"After / before, photos per second (median of per-round ratios): "
            f"{s['after_vs_before_photos_per_s']:.2f}x.",
        ]
    return "\n".join(L) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before-ref", default=None, help="git ref whose predict is 'before' (e.g. main)")
    ap.add_argument("--core-venv", type=Path, default=None, help="a torch-free install (its bin/c3ae-edge)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    ap.add_argument("--from-json", type=Path, default=None, help="only render --markdown from an earlier run's JSON")
    a = ap.parse_args()
    if a.from_json:
        (a.markdown or Path("/dev/stdout")).write_text(markdown(json.loads(a.from_json.read_text())))
        return
    from c3ae_edge.bench.e2e import fgnet_samples

    photos = [str(Path(s.path).resolve()) for s in fgnet_samples(a.data, a.photos, seed=0)]
    with tempfile.TemporaryDirectory() as td:
        before = snapshot(a.before_ref, Path(td) / a.before_ref.replace("/", "_")) if a.before_ref else None
        clip = Path(td) / "clip.mp4"
        make_clip(clip, photos[:8])
        doc = {
            "command": "python bench/scripts/predict_speed.py " + " ".join(sys.argv[1:]),
            "photos": len(photos),
            "n_rounds": a.rounds,
            "environment": onboard.environment(1),
            "load_average_start": [round(v, 2) for v in os.getloadavg()],
        }
        doc.update(measure(a, photos, variants(before, a.core_venv), clip))
    doc["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    text = json.dumps(doc, indent=1) + "\n"
    if a.json:
        a.json.write_text(text)
    else:
        print(text)
    if a.markdown:
        a.markdown.write_text(markdown(doc))


if __name__ == "__main__":
    main()

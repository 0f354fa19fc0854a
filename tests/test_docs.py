"""Every code block in the README and in docs/ (and the notes beside the calibration faces and the bench) runs as
written, or is marked ``<!-- skip: reason -->`` on the line before its fence and skipped with that reason.

Shell blocks run with bash (``set -euo pipefail``) and Python blocks in a fresh interpreter, in a temporary folder,
against the embedded defaults: the installed ``c3ae-edge`` of this venv first on PATH, no ``C3AE_DATA`` and no
``../shared/data`` (so export uses the embedded faces). Blocks of one document run in order in one folder. The
README's tour runs first, in a folder holding ``photo.jpg`` (a real face: one embedded UTKFace chip); every other
document starts from a copy of what the tour left (its rpi bundle, keys and release index), as its text says.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import FRESH_RPI_EXPORT, once_per_run

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = sorted(
    [ROOT / "README.md", ROOT / "calibration" / "NOTES.md"]
    + list((ROOT / "docs").glob("*.md"))
    + list((ROOT / "bench").glob("*/README.md"))
)
README_MAX_BYTES = 12 * 1024
SHELL = {"bash", "sh", "shell"}
PYTHON = {"python", "py"}
FENCE = re.compile(r"^```([\w+-]*)\s*$")
MARK = re.compile(r"^<!--\s*(skip|setup):(.*?)-->\s*$")
PHOTO = "images/31_0_0_20170104170131913.jpg.chip.jpg"  # a 31-year-old's embedded chip, saved as photo.jpg
BLOCK_TIMEOUT_S = 900


@dataclass(frozen=True)
class Block:
    """One fenced code block: where it is, its language, its text, and why it is skipped (None: it runs)."""

    doc: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def blocks(doc: Path) -> list[Block]:
    """The fenced blocks of a markdown file, with the skip (or setup) marker on the line before each fence."""
    lines = doc.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{doc.relative_to(ROOT)}:{i + 1}: unclosed code fence"
        mark = MARK.match(lines[i - 1].strip()) if i else None
        skip = None
        if mark:
            skip = mark.group(2).strip() if mark.group(1) == "skip" else f"setup block: {mark.group(2).strip()}"
        out.append(Block(doc, i + 1, m.group(1).lower(), "\n".join(lines[i + 1 : end]) + "\n", skip))
        i = end + 1
    return out


ALL = [b for d in DOCUMENTS for b in blocks(d)]


def test_the_documents_hold_blocks_that_run():
    assert (ROOT / "docs").is_dir() and len(DOCUMENTS) >= 10, DOCUMENTS
    assert sum(b.skip is None for b in ALL) >= 15, "the extractor found too few runnable blocks"
    assert {"bash", "python"} <= {b.lang for b in ALL if b.skip is None}


def test_every_block_runs_or_says_why_not():
    for b in ALL:
        if b.skip is not None:
            assert len(b.skip) >= 10, f"{b.where}: a skip marker needs a reason, got {b.skip!r}"
        else:
            assert b.lang in SHELL | PYTHON, f"{b.where}: a ```{b.lang} block cannot run: mark it <!-- skip: why -->"


def test_a_skip_marker_sits_right_before_a_fence():
    for doc in DOCUMENTS:
        lines = doc.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.lstrip().startswith("<!-- skip"):
                assert MARK.match(line.strip()), f"{doc.relative_to(ROOT)}:{i + 1}: write <!-- skip: reason -->"
                assert i + 1 < len(lines) and FENCE.match(lines[i + 1]), (
                    f"{doc.relative_to(ROOT)}:{i + 1}: a skip marker must be the line right before a code fence"
                )


def test_blocks_are_parsed_with_their_markers(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("x\n<!-- skip: needs a board -->\n```bash\nfalse\n```\n```python\nprint(1)\n```\n```\nplain\n```\n")
    assert [(b.line, b.lang, b.skip, b.text) for b in blocks(doc)] == [
        (3, "bash", "needs a board", "false\n"),
        (6, "python", None, "print(1)\n"),
        (9, "", None, "plain\n"),
    ]


def test_readme_fits_in_twelve_kilobytes():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size:,} bytes; the bar is {README_MAX_BYTES:,}"


def test_setup_block_holds_the_two_commands_ci_runs():
    """.ci/run takes the bash block after the `<!-- setup:` marker and requires exactly two commands."""
    awk = "/<!-- setup:/{f=1; next} f && /^```bash/{b=1; next} b && /^```/{exit} b"
    out = subprocess.run(["awk", awk, "README.md"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    cmds = out.splitlines()
    assert len(cmds) == 2, cmds
    assert "pip install -c constraints.txt -e '.[all,dev]'" in cmds[0] and cmds[1].startswith(
        ".venv/bin/python -m pytest"
    )
    assert awk in (ROOT / ".ci" / "run").read_text()  # the same extraction as CI's


def test_relative_links_resolve():
    link = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
    for doc in DOCUMENTS:
        for target in link.findall(doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (doc.parent / target).exists(), f"{doc.relative_to(ROOT)} links to a missing {target}"


# --- running the blocks -----------------------------------------------------------------------------------------


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "C3AE_DATA"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def command(line: str) -> str:
    """A shell line without its comment and spacing (for comparing with a command already run)."""
    return " ".join(line.split("#", 1)[0].split())


def run_block(b: Block, cwd: Path, already: dict[str, str] | None = None) -> None:
    """Run one block in cwd; fail with its tail of output when it exits non-zero. A line in ``already`` (a command
    run once per session in an identical fresh folder, its outputs copied into cwd) is not run a second time."""
    if b.lang in PYTHON:
        script = cwd / f".doc-block-{b.line}.py"
        script.write_text(b.text)
        cmd = [sys.executable, str(script)]
    else:
        done = already or {}
        lines = [f"true  # {done[command(ln)]}" if command(ln) in done else ln for ln in b.text.splitlines()]
        cmd = ["bash", "-c", "set -euo pipefail\n" + "\n".join(lines) + "\n"]
    try:
        r = subprocess.run(
            cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    finally:
        if b.lang in PYTHON:
            script.unlink(missing_ok=True)
    tail = (r.stdout[-1500:] + "\n--- stderr ---\n" + r.stderr[-2500:]).strip()
    assert r.returncode == 0, f"{b.where}: ```{b.lang} block exited {r.returncode}\n{b.text}\n{tail}"


def run_document(doc: Path, cwd: Path, already: dict[str, str] | None = None) -> list[str]:
    """Run a document's blocks in order in cwd; return the skipped blocks with their reasons."""
    skipped = []
    for b in blocks(doc):
        if b.skip is not None:
            skipped.append(f"{b.where}: {b.skip}")
            continue
        run_block(b, cwd, already)
    return skipped


@pytest.fixture(scope="session")
def tour(tmp_path_factory, fresh_rpi_export) -> Path:
    """The README's blocks, run in order in a fresh folder with photo.jpg: what a newcomer's folder holds after. Its
    `c3ae-edge export --target rpi` is the session's one run of that command in a fresh folder (conftest), whose
    exports/ is copied in first: the same command, the same embedded faces, one full export instead of two."""

    def build(cwd: Path) -> dict:
        assert not (cwd.parent / "shared" / "data").exists()  # export falls back to the embedded faces
        shutil.copyfile(ROOT / "calibration" / PHOTO, cwd / "photo.jpg")
        shutil.copytree(fresh_rpi_export.cwd / "exports", cwd / "exports")
        already = {" ".join(["c3ae-edge", *FRESH_RPI_EXPORT]): "ran once per session (conftest.fresh_rpi_export)"}
        run_document(ROOT / "README.md", cwd, already)
        return {}

    return once_per_run(tmp_path_factory, "readme-tour", build)[0]


@pytest.mark.slow
def test_readme_blocks_run(tour):
    bundle = tour / "exports" / "c3ae_full-0.1.0-rpi4"
    assert (bundle / "manifest.json").is_file() and (bundle / "SHA256SUMS.minisig").is_file()
    assert (tour / "third_party" / "c3ae_full-rpi4" / "c3ae_full_int8.tflite").is_file()
    assert (tour / "bench.md").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    "doc", [d for d in DOCUMENTS if d != ROOT / "README.md" and blocks(d)], ids=lambda d: str(d.relative_to(ROOT))
)
def test_document_blocks_run(doc, tour, tmp_path):
    cwd = tmp_path / "work"
    shutil.copytree(tour, cwd, symlinks=True)
    skipped = run_document(doc, cwd)
    if all(b.skip is not None for b in blocks(doc)):
        pytest.skip("every block is marked: " + "; ".join(skipped))

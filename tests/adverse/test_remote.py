"""``bench remote`` never lets the board's shell parse a value it did not quote (issue 24, class 2). The ssh and scp on
PATH are stand-ins that record their argv and do what the real ones do with it: ssh hands the command to a real
``sh -c`` (as sshd hands it to the board's login shell), scp copies. The bundle is real and the on-board runner
really runs it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from .conftest import copy_bundle, one_line_error

_SKIP_OPTIONS = """while [ "$#" -gt 0 ]; do
    case "$1" in
        -o) shift 2 ;;
        --) shift; break ;;
        -*) shift ;;
        *) break ;;
    esac
done
"""  # both fakes log their argv, then drop ssh/scp options

FAKE_SSH = (
    """#!/bin/sh
{ printf '%s\\n' ssh "$@"; echo ---; } >> "$C3AE_FAKE_LOG"
"""
    + _SKIP_OPTIONS
    + """shift  # the host
exec sh -c "$*"
"""
)
FAKE_SCP = (
    """#!/bin/sh
{ printf '%s\\n' scp "$@"; echo ---; } >> "$C3AE_FAKE_LOG"
"""
    + _SKIP_OPTIONS
    + """n=$#; i=0
for a in "$@"; do
    i=$((i + 1))
    p=${a#*:}
    [ "$p" = "$a" ] || p=$(eval "printf '%s' $p")  # a remote path: the board's shell parses it (legacy scp)
    if [ "$i" -lt "$n" ]; then set -- "$@" "$p"; else dest=$p; fi
done
shift "$n"
exec cp -r "$@" "$dest"
"""
)
HOSTILE = "b;cd;touch${IFS}PWNED;x"


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch) -> Path:
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    for name, text in (("ssh", FAKE_SSH), ("scp", FAKE_SCP)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    (bindir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')  # the board's: numpy, onnxruntime
    (bindir / "python3").chmod(0o755)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("C3AE_FAKE_LOG", str(tmp_path / "argv.log"))
    return tmp_path


def _calls(log: Path) -> list[list[str]]:
    return [c.strip("\n").split("\n") for c in log.read_text().split("---\n") if c.strip()]


def test_hostile_folder_name_runs_nothing_on_the_board(fake_ssh, tiny_bundle, cli):
    b = copy_bundle(tiny_bundle, fake_ssh / HOSTILE)
    out = fake_ssh / "board.json"
    r = cli("bench", "remote", "pi@board", "--bundle", str(b), "--runs", "3", "--warmup", "0", "--json", str(out))
    assert r.code == 0, r.err
    assert not (fake_ssh / "home" / "PWNED").exists(), "the folder name ran a command on the board"
    doc = json.loads(out.read_text())
    assert doc["config"]["remote"] == "pi@board" and doc["config"]["bundle"] == HOSTILE
    assert [row["artifact"]["file"] for row in doc["results"]] == ["c3ae_full_fp32.onnx"]
    calls = _calls(fake_ssh / "argv.log")
    assert [c[0] for c in calls] == ["ssh", "scp", "ssh", "scp", "ssh"]
    for c in calls:  # options end before the host: a host can never be read as an option
        host_at = next(i for i, a in enumerate(c) if "pi@board" in a)
        assert "--" in c[:host_at], c
    assert f"onboard.py '{HOSTILE}'" in calls[2][-1], calls[2]


@pytest.mark.parametrize("host", ["-oProxyCommand=touch PWNED", "-p2222", "pi@-oProxyCommand=x", "pi@ho st", ""])
def test_host_that_is_an_option_is_refused(host, fake_ssh, tiny_bundle, capsys):
    from conftest import run_main

    r = run_main(["bench", "remote", "--bundle", str(tiny_bundle), "--", host], capsys)  # "--": past typer's parser
    one_line_error(r, 2, ("remote host",))
    assert not (fake_ssh / "argv.log").exists(), "ssh was called"
    assert not list(fake_ssh.rglob("PWNED"))

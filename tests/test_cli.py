"""The command line: fast help with no heavy imports, models table/JSON, one-line errors."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

CLI_DIR = Path(__file__).resolve().parents[1] / "c3ae_edge" / "cli"


def test_help_imports_no_torch_nor_backends():
    code = (
        "import sys; sys.argv=['c3ae-edge','--help']\nimport c3ae_edge.cli as c\n"
        "try:\n    c.main()\nexcept SystemExit:\n    pass\n"
        "heavy=[m for m in ('torch','onnx','onnxruntime','openvino','nncf','litert_torch','ai_edge_litert','cv2')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
    for cmd in ("models", "train", "evaluate", "predict"):
        assert cmd in r.stdout
    flat = " ".join(
        r.stdout.replace("│", " ").split()
    )  # the help names each backend's pip extra (rich ate "[onnx]" once)
    for extra in ("onnx", "tflite", "openvino"):
        assert f"pip extra '{extra}'" in flat, flat


def test_commands_are_registered_one_way():
    """Each command module exposes ``register(app)``, which adds module-level functions (``app.command(...)(fn)``) or
    a sub-app (``app.add_typer``): no decorated command functions, none defined inside ``register``."""
    from c3ae_edge.cli import COMMAND_MODULES

    modules = sorted(f.stem for f in CLI_DIR.glob("*.py") if f.stem not in ("__init__", "__main__"))
    assert modules == sorted(m.rsplit(".", 1)[1] for m in COMMAND_MODULES), modules
    for f in sorted(CLI_DIR.glob("*.py")):
        tree = ast.parse(f.read_text())
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        assert not [n.name for n in functions if n.decorator_list], f"{f.name}: decorated functions"
        register = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "register"]
        if f.stem in modules:
            assert len(register) == 1, f"{f.name}: no module-level register(app)"
            nested = [n for n in ast.walk(register[0]) if isinstance(n, (ast.FunctionDef, ast.Lambda))][1:]
            assert not nested, f"{f.name}: register defines functions"


def test_models_json_reports_computed_numbers(cli):
    r = cli("models", "--json")
    assert r.code == 0, r.err
    rows = {m["name"]: m for m in json.loads(r.out)}
    assert rows["c3ae_plain"]["params"] == 36_377 and rows["c3ae_plain"]["conv_macc"] == 12_562_816
    assert abs(rows["c3ae_full"]["params"] - 39_700) / 39_700 <= 0.03
    for n in (
        "c3ae_plain",
        "ssr_net",
        "mobilenet_v2_050_6",
        "mobilenet_v2_075_6",
        "shufflenet_v2_050_1",
        "shufflenet_v2_075_1",
    ):
        assert rows[n]["paper"]["cpu_s"] is not None and rows[n]["paper"]["macc_m"] is not None
        assert rows[n]["fp32_bytes"] == 4 * rows[n]["params"]  # fp32 state dict: params + BN running stats
    assert rows["ssr_net"]["paper_params_delta_pct"] == 0.0


def test_models_table_labels_paper_values(cli):
    r = cli("models")
    assert r.code == 0, r.err
    plain = next(line for line in r.out.splitlines() if "c3ae_plain " in line)  # computed beside the paper's
    assert "36,377" in plain and "12,562,816" in plain, plain


def test_bad_input_is_one_line_nonzero(cli):
    for args, code in (
        (("models", "--filter", "zzz"), 2),
        (("models", "--bogus"), 2),
        (("nosuchcommand",), 2),
        (("bench", "nosuchsub"), 2),
        (("weights", "soup"), 2),
    ):
        r = cli(*args)
        assert r.code == code, (args, r.code, r.err)
        assert "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1, r.err

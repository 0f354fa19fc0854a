"""The package's shape: stages import each other in one direction only, and the scripts that ship in bundles
(c3ae_edge/board/) import nothing of ours beyond each other: numpy, Pillow, OpenCV and the runtimes."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "c3ae_edge"
BOARD_ALLOWED = {
    "numpy",
    "PIL",
    "cv2",
    "tflite_runtime",
    "ai_edge_litert",
    "onnxruntime",
    "openvino",
    "tflite_micro",
    "psutil",
}


def imports(path: Path) -> set[str]:
    """Absolute module names imported anywhere in a file (lazy imports included), relative ones resolved."""
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    here = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
            mod = ".".join(x for x in (base, node.module or "") if x)
            out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
    return out


def stage(module: str) -> str | None:
    """c3ae_edge.export.bundle -> 'export'; top-level modules are their own stage."""
    parts = module.split(".")
    return parts[1] if parts[0] == "c3ae_edge" and len(parts) > 1 else None


def stage_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for f in PKG.rglob("*.py"):
        src = stage(".".join(f.relative_to(PKG.parent).with_suffix("").parts))
        for dst in map(stage, imports(f)):
            known = dst and ((PKG / dst).is_dir() or (PKG / f"{dst}.py").is_file())  # not c3ae_edge.__version__
            if src and known and dst != src:
                graph.setdefault(src, set()).add(dst)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = 2
        stack.pop()
        return None

    return next((c for n in sorted(graph) if n not in state and (c := visit(n))), None)


def test_cycle_finder_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": {"c"}}) is None


def test_stages_import_in_one_direction():
    graph = stage_graph()
    assert {"models", "weights", "export", "bench", "data"} <= set(graph), graph  # the graph saw the real imports
    assert "weights" in graph["export"] and "models" in graph["weights"]
    assert cycle(graph) is None, f"import cycle between stages: {' -> '.join(cycle(graph))}"
    assert "weights" not in graph.get("models", set()), "models must not import weights"


def module_name(path: Path, base: Path = PKG.parent) -> str:
    """c3ae_edge/export/verify.py -> c3ae_edge.export.verify; a package's __init__.py is the package."""
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def file_graph(root: Path = PKG) -> dict[str, set[str]]:
    """Module -> the modules of ours it imports, at any depth (imports inside functions included). ``from pkg import
    name`` points at the module ``pkg.name`` when there is one, else at ``pkg`` (its __init__.py)."""
    files = {module_name(f, root.parent): f for f in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for src, f in files.items():
        here = src.split(".") if f.name == "__init__.py" else src.split(".")[:-1]
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                found = {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
                mod = ".".join(x for x in (base, node.module or "") if x)
                found = {f"{mod}.{a.name}" if f"{mod}.{a.name}" in files else mod for a in node.names}
            else:
                continue
            graph.setdefault(src, set()).update(m for m in found if m in files and m != src)
    return {k: v for k, v in graph.items() if v}


def test_file_graph_sees_function_level_imports(tmp_path):
    pkg = tmp_path / "c3ae_edge"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from c3ae_edge.sub.b import B\n")
    (pkg / "sub" / "a.py").write_text("def f():\n    from c3ae_edge.sub import b\n")
    (pkg / "sub" / "b.py").write_text("import os\n\nfrom . import a\n\nB = 1\n")
    graph = file_graph(pkg)
    assert graph == {
        "c3ae_edge.sub": {"c3ae_edge.sub.b"},
        "c3ae_edge.sub.a": {"c3ae_edge.sub.b"},
        "c3ae_edge.sub.b": {"c3ae_edge.sub.a"},
    }
    assert cycle(graph) == ["c3ae_edge.sub.b", "c3ae_edge.sub.a", "c3ae_edge.sub.b"]


def test_no_import_cycle_between_files():
    graph = file_graph()
    assert len(graph) > 50 and "c3ae_edge.export.bundle_check" in graph["c3ae_edge.export.verify"], "graph too small"
    found = cycle(graph)
    assert found is None, f"import cycle between files: {' -> '.join(found)}"


def private_imports(root: Path = PKG) -> list[str]:
    """``from c3ae_edge.x import _name`` in another module of the package: a private name reached across files."""
    found = []
    for f in root.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("c3ae_edge")):
                found += [
                    f"{f.relative_to(root.parent)}:{node.lineno} imports {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return found


def test_no_private_name_is_imported_across_modules(tmp_path):
    (tmp_path / "c3ae_edge").mkdir()
    (tmp_path / "c3ae_edge" / "a.py").write_text("def f():\n    from c3ae_edge.b import _g, h\n")
    assert private_imports(tmp_path / "c3ae_edge") == ["c3ae_edge/a.py:2 imports c3ae_edge.b._g"]
    assert private_imports() == []


MAX_FUNCTION_LINES = 60
FUNCTION_ROOTS = ("c3ae_edge", "bench/scripts", "bench/aarch64")


def long_functions(roots: list[Path], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``file:function:length`` for every function (methods and nested ones included) longer than ``limit`` lines,
    counted from its ``def`` line to its last line."""
    found = []
    for root in roots:
        for f in sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(f.read_text(), str(f))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > limit:
                        found.append(f"{f.relative_to(root.parent)}:{node.name}:{length}")
    return found


def test_long_function_finder_counts_def_to_last_line(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    body = "".join(f"x{i} = {i}\n" for i in range(59))  # def + 59 lines: 60, the limit
    ok = "@decorator\ndef ok():\n" + textwrap.indent(body, "    ")
    method = "class C:\n    async def m(self):\n" + textwrap.indent(body + "pass\n", "        ")
    (pkg / "a.py").write_text(f"{ok}\n\n{method}")
    nested = "def inner():\n" + textwrap.indent(body + "pass\n", "    ") + "\nreturn inner\n"
    (pkg / "b.py").write_text("def outer():\n" + textwrap.indent(nested, "    "))
    assert long_functions([pkg]) == ["pkg/a.py:m:61", "pkg/b.py:outer:64", "pkg/b.py:inner:61"]


def test_no_function_is_over_60_lines():
    roots = [PKG.parent / r for r in FUNCTION_ROOTS]
    assert all(r.is_dir() and any(r.rglob("*.py")) for r in roots), roots
    found = long_functions(roots)
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines (split them): " + ", ".join(found)


@pytest.mark.parametrize("script", sorted(p.name for p in (PKG / "board").glob("*.py") if p.name != "__init__.py"))
def test_board_scripts_import_only_numpy_pillow_and_runtimes(script):
    mods = {m for m in imports(PKG / "board" / script)}
    ours = {m for m in mods if m.split(".")[0] == "c3ae_edge"}
    assert ours <= {"c3ae_edge.board", *(f"c3ae_edge.board.{p.stem}" for p in (PKG / "board").glob("*.py"))}, ours
    third = {m.split(".")[0] for m in mods} - set(sys.stdlib_module_names) - {"c3ae_edge", "__future__"}
    siblings = {p.stem for p in (PKG / "board").glob("*.py")}
    assert third - siblings <= BOARD_ALLOWED, f"{script} imports {sorted(third - siblings - BOARD_ALLOWED)}"


def test_package_data_is_read_through_importlib_resources():
    tables = resources.files("c3ae_edge.bench") / "tables"
    assert (tables / "paper_table3.json").is_file() and (tables / "peers_recipe.json").is_file()
    src = "\n".join(p.read_text() for p in PKG.rglob("*.py"))
    assert 'parents[2] / "bench"' not in src and "REPO_BENCH" not in src  # results are not read back at run time


# The design card the project was started from names its top level.
CARD = ("c3ae_edge", "targets", "calibration", "bench", "tests", "pyproject.toml")
OTHER_TOP = {"docs", "README.md", "ARCHITECTURE.md", "CHANGELOG.md", "LICENSE", "LICENSES.md", "constraints.txt"}


def test_top_level_matches_the_owners_card():
    tracked = subprocess.run(["git", "ls-files"], cwd=PKG.parent, capture_output=True, text=True, check=True).stdout
    top = {line.split("/")[0] for line in tracked.splitlines() if not line.startswith(".")}
    assert set(CARD) <= top, f"missing from the top level: {sorted(set(CARD) - top)}"
    assert top <= set(CARD) | OTHER_TOP, f"not on the card: {sorted(top - set(CARD) - OTHER_TOP)}"
    assert {p.suffix for p in (PKG.parent / "targets").iterdir()} == {".toml"}  # one TOML per target, nothing else
    assert (PKG.parent / "calibration" / "faceset.json").is_file() and (PKG.parent / "bench" / "results").is_dir()


def test_shipped_folders_resolve_to_the_top_level_in_a_checkout():
    from c3ae_edge import shipped
    from c3ae_edge.export import default_faces, targets

    assert shipped.folder("targets") == PKG.parent / "targets"
    assert default_faces.folder() == PKG.parent / "calibration" and default_faces.available()
    assert {"rpi4", "x86", "cortex-m"} <= set(targets.builtin())

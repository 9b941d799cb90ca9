"""The layers in .importlinter hold, and the check would notice if they did not."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH first: the copy under test, not the installed package, is analysed.
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, check=False, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=120)


def test_every_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(ROOT / "scaler", tmp_path / "scaler", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    return tmp_path


@pytest.mark.parametrize(("module", "line", "contract"), [
    pytest.param("decide/decisions.py", "import scaler.cluster.kube", "Layers:", id="decide-imports-cluster"),
    pytest.param("decide/windows.py", "import scaler.signals.prometheus", "Layers:", id="decide-imports-signals"),
    pytest.param("cluster/workloads.py", "import scaler.signals.prometheus", "Layers:", id="cluster-imports-signals"),
    pytest.param("run/settings.py", "import scaler.cli.main", "Layers:", id="run-imports-cli"),
    pytest.param("decide/policies.py", "import kubernetes", "The decide layer", id="decide-imports-kubernetes"),
    pytest.param("decide/selectors.py", "import structlog", "The decide layer", id="decide-imports-structlog"),
    pytest.param("run/planning.py", "import scaler.cluster.pausing", "Evaluating, plan and backtest",
                 id="plan-imports-the-pauser"),
    pytest.param("run/evaluating.py", "import scaler.run.acting", "Evaluating, plan and backtest",
                 id="evaluator-imports-the-actor"),
])
def test_a_forbidden_import_breaks_the_check(copy, module, line, contract):
    path = copy / "scaler" / module
    path.write_text(path.read_text() + f"\n{line}  # probe\n")
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
    assert line.split()[-1] in broken, result.stdout  # names the offending import


def test_a_module_outside_every_layer_breaks_the_check(copy):
    (copy / "scaler" / "stray.py").write_text('"""A new top-level module nobody put in a layer."""\n')
    result = lint_imports(copy)
    assert result.returncode == 1, result.stdout
    assert "scaler.stray" in result.stdout


MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 420  # "about 400": a module past this wants splitting along a seam


#: The Python of the product, of its deployment (the local cluster, the demo)
#: and of the benchmarks: read, reviewed and changed as much as the rest.
SIZED = ("scaler", "deploy", "benchmarks")


def test_functions_and_modules_stay_readable():
    """No function in scaler/, deploy/ or benchmarks/ over 60 lines, no module
    over ~400: the 114-line decide() this replaced hid rules from its
    readers, as an 88-line main() hid the demo's steps."""
    import ast

    too_long = []
    for path in sorted(p for folder in SIZED for p in (ROOT / folder).rglob("*.py")):
        text = path.read_text()
        where = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{where}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    too_long.append(f"{where}:{node.lineno} {node.name}(): {lines} lines")
    assert too_long == []


def test_the_documented_layout_names_every_module():
    """The Layout section of docs/development.md is the tree: every module of
    scaler/ is in it, and nothing it names is missing from the tree."""
    import re

    doc = (ROOT / "docs" / "development.md").read_text()
    sections = re.split(r"^## Layout[ \t]*$", doc, flags=re.MULTILINE)
    assert len(sections) == 2, "docs/development.md has exactly one '## Layout' section"
    layout = re.split(r"^#{1,2} ", sections[1], maxsplit=1, flags=re.MULTILINE)[0]
    tree = layout.split("```", 2)[1]
    named, folder = set(), None
    for line in tree.splitlines():
        if match := re.match(r"^  (\w+)/", line):
            folder = match[1]
        elif match := re.match(r"^    (\w+\.py)", line):
            named.add(f"{folder}/{match[1]}")
    modules = {f"{p.parent.name}/{p.name}" for p in (ROOT / "scaler").glob("*/*.py") if p.name != "__init__.py"}
    assert named == modules, (f"modules missing from docs/development.md's Layout: {sorted(modules - named)}; "
                              f"named there but not in scaler/: {sorted(named - modules)}")


def test_every_benchmark_and_deploy_script_imports():
    """benchmarks/ and deploy/ run only on the cluster (or by hand), so a name
    moved in scaler/ would break them unseen until then: import every module
    there, each folder on the path as its scripts put it."""
    folders = [ROOT / "benchmarks", ROOT / "deploy" / "local", ROOT / "deploy" / "demo"]
    modules = [(folder, path.stem) for folder in folders for path in sorted(folder.glob("*.py"))]
    assert len(modules) > 20
    program = "\n".join(["import importlib, sys",
                         *(f"sys.path.insert(0, {str(folder)!r})" for folder in folders),
                         *(f"importlib.import_module({name!r})" for _, name in modules)])
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr[-2000:]

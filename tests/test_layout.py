"""The package's shape: subpackages by pipeline stage, imports pointing only downward, thin
entry points, short functions, one place that knows about pretrained pipelines."""

import ast
import importlib
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "harness"
# lowest first: a module may import its own layer and the layers below it, never above
LAYERS = ("engine", "common", "data", "models", "metrics", "measure", "pipeline", "studies")
ENTRY = "entry points"  # the top-level harness/<verb>.py files, above every layer


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).parts
        yield path, (parts[0] if len(parts) > 1 else ENTRY)


def harness_imports(tree: ast.AST) -> list[str]:
    """Second components of every `harness.X...` import (`from harness import X` included)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("harness"):
            parts = node.module.split(".")
            found += [a.name for a in node.names] if len(parts) == 1 else [parts[1]]
        elif isinstance(node, ast.Import):
            found += [a.name.split(".")[1] for a in node.names if a.name.startswith("harness.")]
    return found


def test_imports_point_only_downward():
    order = {name: i for i, name in enumerate((*LAYERS, ENTRY))}
    upward = []
    for path, layer in modules():
        for target in harness_imports(ast.parse(path.read_text())):
            assert target in order or target == "__version__", f"{path}: unknown {target}"
            if target in order and order[target] > order[layer]:
                upward.append(f"{path.relative_to(ROOT)} ({layer}) imports harness.{target}")
    assert not upward, upward


def test_the_top_level_holds_subpackages_and_thin_entry_points():
    files = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(files) <= 9, files  # __init__ and one entry point per command
    dirs = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert dirs == set(LAYERS)
    for name in files:
        if name != "__init__.py":
            assert len((PACKAGE / name).read_text().splitlines()) <= 20, name


def test_every_entry_point_is_a_declared_console_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    verbs = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert {f"tpdiff-{v}" for v in verbs} <= set(scripts)
    for target in scripts.values():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), target


def test_no_function_is_longer_than_80_lines():
    long = []
    for path, _ in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.name} ({lines} lines)")
    assert not long, long


def test_only_the_models_and_the_build_step_branch_on_pretrained():
    allowed = {PACKAGE / "pipeline" / "build.py"}
    branches = []
    for path, layer in modules():
        if layer == "models" or path in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.If, ast.IfExp, ast.While, ast.BoolOp)):
                test = node if isinstance(node, ast.BoolOp) else node.test
                names = {n.attr for n in ast.walk(test) if isinstance(n, ast.Attribute)}
                if "pretrained" in names:
                    branches.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not branches, branches


STUDIES = PACKAGE / "studies"
CORE = "core"
INDEX = {"suites", "ablate"}  # the registry of named jobs, and a command's alias


def study_imports(tree: ast.AST) -> list[str]:
    """Third components of every `harness.studies.X...` import (`from harness.studies import
    X` included)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            if parts[:2] == ["harness", "studies"]:
                found += [a.name for a in node.names] if len(parts) == 2 else [parts[2]]
        elif isinstance(node, ast.Import):
            found += [a.name.split(".")[2] for a in node.names
                      if a.name.startswith("harness.studies.")]  # fmt: skip
    return found


def test_studies_holds_packages_only_and_a_core():
    files = sorted(p.name for p in STUDIES.glob("*.py"))
    assert files == ["__init__.py"], files
    packages = {p.name for p in STUDIES.iterdir() if (p / "__init__.py").is_file()}
    assert CORE in packages
    studies = packages - {CORE} - INDEX
    assert studies == {"paper", "ablations", "sweep", "recipe", "checks"}, studies
    for study in studies:  # the same three modules in each
        assert {"run.py", "report.py", "cli.py"} <= {p.name for p in (STUDIES / study).glob("*.py")}


def test_a_study_imports_only_the_core_never_another_study():
    packages = {p.name for p in STUDIES.iterdir() if (p / "__init__.py").is_file()}
    sideways = []
    for path in sorted(STUDIES.rglob("*.py")):
        parts = path.relative_to(STUDIES).parts
        if len(parts) < 2 or parts[0] in INDEX:
            continue
        own = parts[0]
        allowed = {CORE} if own == CORE else {CORE, own}
        for target in study_imports(ast.parse(path.read_text())):
            assert target in packages, f"{path}: unknown harness.studies.{target}"
            if target not in allowed:
                sideways.append(f"{path.relative_to(ROOT)} imports harness.studies.{target}")
    assert not sideways, sideways


def test_the_study_layout_check_sees_a_sideways_import():
    tree = ast.parse("from harness.studies.paper.run import arm\nimport harness.studies.sweep.run")
    assert study_imports(tree) == ["paper", "sweep"]

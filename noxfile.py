"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s notebook`, `nox -s ablate_stages`,
`nox -s ablate`. Arguments after `--` go to the tool."""

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint"]

# the CPU build on this project's machines; on CUDA machines install your own torch first
TORCH = "torch==2.13.0"
LINTED = ("harness", "ablations", "benchmarks", "tests", "noxfile.py")


@nox.session
def tests(session: nox.Session) -> None:
    session.install(TORCH, "-e", ".[dev]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", *LINTED, *session.posargs)


@nox.session
def notebook(session: nox.Session) -> None:
    """Execute notebooks/analysis.ipynb against results/paper and write it back with its
    outputs (commit it); `-- DIR --save OUT.ipynb` executes it against another folder."""
    session.install(TORCH, "-e", ".[dev]")
    session.run("python", "notebooks/execute.py", *(session.posargs or ["--in-place"]))


@nox.session
def ablate_stages(session: nox.Session) -> None:
    """Optuna stage-boundary sweep, e.g. `nox -s ablate_stages -- --trials 12 --scale cpu`
    (options: python -m harness.sweep --help)."""
    session.install(TORCH, "-e", ".[dev]")
    session.run("python", "-m", "harness.sweep", *session.posargs)


@nox.session
def ablate(session: nox.Session) -> None:
    """Named ablations, e.g. `nox -s ablate -- stages renoise --scale cpu` (or `-- all`)."""
    session.install(TORCH, "-e", ".[dev]")
    session.run("python", "-m", "harness.studies.ablate", *(session.posargs or ["--list"]))


@nox.session
def gate(session: nox.Session) -> None:
    """Speed gate on TPDiff/vanilla ratios against results/baseline.json (`-- --update-baseline`
    to refresh it)."""
    session.install(TORCH, "-e", ".[dev]")
    session.run("python", "-m", "harness.measure.gate", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """pytest-benchmark suite (benchmarks/), saved under .benchmarks/ for --benchmark-compare."""
    session.install(TORCH, "-e", ".[dev]")
    session.run(
        "python", "-m", "pytest", "benchmarks", "--benchmark-only", "--benchmark-autosave",
        *session.posargs,
    )  # fmt: skip

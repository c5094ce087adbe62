"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s notebook`. Arguments after `--` go
to the tool."""

import nox

nox.options.reuse_venv = "yes"
nox.options.sessions = ["tests", "lint"]

# the CPU build on this project's machines; on CUDA machines install your own torch first
TORCH = "torch==2.13.0"


@nox.session
def tests(session: nox.Session) -> None:
    session.install(TORCH, "-e", ".[dev]")
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", "harness", "tests", "noxfile.py", *session.posargs)


@nox.session
def notebook(session: nox.Session) -> None:
    """Execute notebooks/analysis.ipynb against results/paper (or the folder given after --)."""
    session.install(TORCH, "-e", ".[dev]")
    session.run("python", "notebooks/execute.py", *session.posargs)

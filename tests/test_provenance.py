"""Result identities: what a stored result depends on, and the rules for reusing one."""

import io
import itertools
import json
import re
import subprocess
import time

import pandas as pd
import pytest
import torch

from harness.common.config import Config
from harness.pipeline.provenance import (
    FolderInUse,
    ResultIdentity,
    append_result,
    claim_folder,
    code_revision,
    stored_row,
    training_hash,
    weights_hash,
)
from harness.studies.core.phases import Phases


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_code_revision_follows_the_code_not_the_results(tmp_path):
    (tmp_path / "harness").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "harness" / "a.py").write_text("x = 1\n")
    (tmp_path / "results" / "evals.csv").write_text("a\n1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    assert code_revision(tmp_path) == head
    (tmp_path / "results" / "evals.csv").write_text("a\n2\n")  # a result, not code
    assert code_revision(tmp_path) == head
    _git(tmp_path, "add", ".")  # a commit of results alone: the code's revision stays
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results")
    later = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True,
                           text=True, check=True).stdout.strip()  # fmt: skip
    assert later != head and code_revision(tmp_path) == head
    (tmp_path / "harness" / "a.py").write_text("x = 2\n")
    dirty = code_revision(tmp_path)
    assert dirty.startswith(head + "+dirty.")
    (tmp_path / "harness" / "a.py").write_text("x = 3\n")
    assert code_revision(tmp_path) not in (head, dirty)  # another edit, another revision


def test_code_revision_outside_git_hashes_the_sources(tmp_path):
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / "a.py").write_text("x = 1\n")
    first = code_revision(tmp_path)
    assert first.startswith("src.")
    (tmp_path / "harness" / "a.py").write_text("x = 2\n")
    assert code_revision(tmp_path) != first


def test_training_hash_ignores_bookkeeping_only():
    cfg = Config()
    assert training_hash(cfg) == training_hash(cfg.replace(name="x", out_dir="y", steps=9))
    assert training_hash(cfg) != training_hash(cfg.replace(lr=1e-3))
    assert training_hash(cfg) != training_hash(cfg.replace(align=False))


def test_weights_hash_sees_the_weights_and_nothing_else():
    model = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.zeros(3, dtype=torch.bfloat16)}
    state = dict(model=model, step=5, wall_time_s=1.0)
    same = dict(model={k: v.clone() for k, v in model.items()}, step=5, wall_time_s=99.0)
    assert weights_hash(state) == weights_hash(same)
    nudged = {k: v.clone() for k, v in model.items()}
    nudged["w"][1, 2] += 1e-6
    assert weights_hash(dict(model=nudged)) != weights_hash(state)
    assert weights_hash(state | dict(ema={"w": model["w"]})) != weights_hash(state)


def _identity(**changes):
    base = dict(config="c", checkpoint="10:w", sampling="s", metrics="m", n=8, code="g")
    return ResultIdentity(**(base | changes))


def test_every_part_of_the_identity_counts():
    base = _identity()
    for field, value in (("config", "c2"), ("checkpoint", "10:w2"), ("sampling", "s2"),
                         ("metrics", "m2"), ("n", 16), ("code", "g2")):  # fmt: skip
        assert _identity(**{field: value}).key != base.key, field


def test_a_row_is_reused_only_under_its_identity_and_stale_rows_are_kept_apart(tmp_path):
    table = tmp_path / "evals.csv"
    old, new = _identity(), _identity(code="g2")
    append_result(table, dict(run="a", step=10, **old.columns(), score=1.0), same=("run", "step"))
    append_result(table, dict(run="b", step=10, **old.columns(), score=3.0), same=("run", "step"))
    assert stored_row(table, old)["score"] == 3.0  # the last row of that identity
    assert stored_row(table, new) is None
    append_result(table, dict(run="a", step=10, **new.columns(), score=2.0), same=("run", "step"))
    rows = pd.read_csv(table)
    assert sorted(zip(rows.run, rows.score)) == [("a", 2.0), ("b", 3.0)]
    stale = pd.read_csv(tmp_path / "evals-superseded.csv")
    assert list(stale.score) == [1.0] and list(stale.git) == ["g"]
    # the same score appended again (two processes that made it at once) is kept once
    append_result(table, dict(run="a", step=10, **new.columns(), score=2.0), same=("run", "step"))
    assert len(pd.read_csv(table)) == 2


def test_an_identity_that_reads_as_a_number_is_still_found(tmp_path):
    """A hex key such as 8167671843652e31 parses as a float (8.17e43) and a revision such as
    0123456 as an int: the hash columns are read as text, so the score is reused, not redone
    and moved aside."""
    looks_numeric = re.compile(r"[0-9]+(e[0-9]+)?")
    ident = next(
        i for i in (_identity(config=f"c{k}", code="0123456") for k in itertools.count())
        if looks_numeric.fullmatch(i.key)
    )  # fmt: skip
    assert pd.read_csv(io.StringIO(f"identity\n{ident.key}\n"))["identity"].dtype != object
    table = tmp_path / "evals.csv"
    append_result(table, dict(run="a", step=10, **ident.columns(), score=1.0), same=("run", "step"))
    append_result(table, dict(run="a", step=10, **ident.columns(), score=1.0), same=("run", "step"))
    assert stored_row(table, ident)["score"] == 1.0
    assert stored_row(table, ident)["git"] == "0123456"
    assert len(pd.read_csv(table, dtype=str)) == 1
    assert not (tmp_path / "evals-superseded.csv").exists()


def test_claim_folder_resumes_the_same_job_and_refuses_another(tmp_path):
    out = tmp_path / "paper"
    job = dict(suite="paper", code="abc", runs={"dit": "h1"})
    claim_folder(out, job)
    (out / "evals.csv").write_text("run\nx\n")
    assert claim_folder(out, dict(job)) == job  # a resume
    other = dict(job, code="def", runs={"dit": "h2"})
    with pytest.raises(FolderInUse) as err:
        claim_folder(out, other)
    message = str(err.value)
    assert "--out" in message and "--fresh" in message and str(out) in message
    assert "code: 'abc' there, 'def' now" in message and "runs.dit" in message
    assert (out / "evals.csv").read_text() == "run\nx\n"  # nothing touched
    claim_folder(out, other, fresh=True)
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("paper.superseded-")]
    assert len(aside) == 1 and (aside[0] / "evals.csv").read_text() == "run\nx\n"
    assert json.loads((out / "job.json").read_text()) == other
    assert not (out / "evals.csv").exists()


def test_results_without_an_identity_are_refused(tmp_path):
    (tmp_path / "evals.csv").write_text("run\nx\n")  # a folder from before identities
    with pytest.raises(FolderInUse, match="no recorded identity"):
        claim_folder(tmp_path, dict(suite="paper"))


def test_a_phase_keeps_its_time_while_it_runs_and_when_it_fails(tmp_path):
    path = tmp_path / "phases.json"
    timer = Phases(path, every=0.01)
    with timer("train", workers=2):
        for _ in range(500):  # the beat writes the running phase: a kill keeps it
            if path.is_file():
                break
            time.sleep(0.01)
        running = json.loads(path.read_text())["train"]
    assert running["sessions"] == 1 and running["workers"] == 2 and running["seconds"] > 0
    with pytest.raises(KeyboardInterrupt), timer("train"):  # a second, interrupted session
        raise KeyboardInterrupt
    record = json.loads(path.read_text())["train"]
    assert record["sessions"] == 2 and record["seconds"] >= running["seconds"]
    assert record["workers"] == 2  # what the first session stored stays

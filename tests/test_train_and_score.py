"""The studies' one unit of work (`harness.studies.core.train_and_score`): arms trained in
chunks and scored along the way, per training seed, in this process or in parallel workers
that share one results table."""

import pandas as pd
import pytest

import harness.pipeline.evaluate as evaluate
from harness.metrics import MetricOptions
from harness.metrics.evaluator import load_evaluator
from harness.studies.core.protocol import Evaluation
from harness.studies.core.scale import SCALES
from harness.studies.core.train_and_score import Arm, split_sampling, train_and_score, trial_config

TINY = SCALES["tiny"]


def matched_arms(runs, book) -> list[Arm]:
    """Vanilla and TPDiff at the tiny scale, every snapshot scored into one shared `book`."""
    arms = []
    for method in ("vanilla", "tpdiff"):
        train, changes = split_sampling(trial_config(TINY, runs, method=method))
        score = Evaluation(TINY.curve.n, ("fvd-md", "pa-md"), changes, dict(run=train.name))
        arms.append(Arm(train, TINY.curve.evals, (score,), book=book, same=("run", "step", "n")))
    return arms


@pytest.mark.slow
def test_parallel_workers_and_seeds_fill_one_table_that_a_rerun_reuses(tmp_path, monkeypatch):
    monkeypatch.setenv("TPDIFF_CACHE", str(tmp_path / "cache"))
    load_evaluator(TINY.evaluator, tmp_path / "cache", progress=False)
    options = MetricOptions(evaluator=TINY.evaluator, device="cpu")
    book = tmp_path / "evals.csv"
    arms = matched_arms(tmp_path / "runs", book)
    rows = train_and_score(arms, options, seeds=(0, 1), workers=2)

    names = [a.cfg.name for a in arms]
    expected = [(n + s, step) for s in ("", "-seed1") for n in names for step in (2, 4)]
    assert [(r["run"], r["step"]) for r in rows] == expected  # seed-major, arm by arm
    assert [r.get("seed", 0) for r in rows] == [0] * 4 + [1] * 4
    for name, _ in expected[::2]:  # each seed of each arm trained in its own run folder
        assert (tmp_path / "runs" / name / "checkpoint.pt").is_file()
    table = pd.read_csv(book)  # two processes appended to it: no row lost, none twice
    assert sorted(zip(table["run"], table["step"])) == sorted(expected)
    assert table["FVD-md"].notna().all()

    def fail(*args, **kwargs):
        raise AssertionError("a stored score was recomputed")

    monkeypatch.setattr(evaluate, "score_checkpoint", fail)
    again = train_and_score(arms, options, seeds=(0, 1))  # in this process, all reused
    assert [r["FVD-md"] for r in again] == [r["FVD-md"] for r in rows]
    assert [r["identity"] for r in again] == [r["identity"] for r in rows]


def test_a_callback_needs_this_process(tmp_path):
    arms = matched_arms(tmp_path / "runs", tmp_path / "evals.csv")
    with pytest.raises(ValueError, match="workers=1"):
        train_and_score(arms, None, workers=2, on_score=lambda step, row: None)


def test_an_arm_refuses_chunks_that_do_not_divide_its_steps(tmp_path):
    train, _ = split_sampling(trial_config(TINY, tmp_path))
    with pytest.raises(ValueError, match="multiple of evals=3"):
        Arm(train, 3)


def test_a_seeded_arm_trains_its_own_run_and_its_rows_say_so(tmp_path):
    train, changes = split_sampling(trial_config(TINY, tmp_path))
    bare = Arm(train, 2, (Evaluation(8, ("fvd-md",), changes),))  # rows without columns
    paired = Arm(train, 2, last=(Evaluation(8, ("fvd-md",), extra=dict(seed=1, run="x")),))
    assert bare.with_seed(0) is bare
    two = bare.with_seed(2)
    assert two.cfg.seed == train.seed + 2 and two.cfg.name == f"{train.name}-seed2"
    assert two.cfg.run_dir != train.run_dir
    assert two.every[0].extra == dict(seed=2, run=two.cfg.name)
    assert paired.with_seed(2).last[0].extra == dict(seed=3, run=f"{train.name}-seed2")

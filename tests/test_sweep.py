"""The stage-boundary sweep: search space, pruning rule, storage, resume after a kill,
several workers on one storage, failing trials, outputs. The end-to-end tests train real
tiny configs (`--scale tiny`)."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import harness.studies.sweep as sweep
from harness.common.config import Config
from harness.metrics.evaluator import load_evaluator
from harness.pipeline.build import plan_for
from harness.studies.trials import SCALES

ROOT = Path(__file__).resolve().parent.parent
TINY = sweep.SweepSettings(scale="tiny", prune_after=100)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A shared evaluator cache, trained once before any worker starts."""
    root = tmp_path_factory.mktemp("cache")
    load_evaluator(SCALES["tiny"].evaluator, root, progress=False)
    return root


def run_cli(args, cache, **kw):
    env = dict(os.environ, TPDIFF_CACHE=str(cache), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "harness.sweep", "--scale", "tiny", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)  # fmt: skip


def load(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=sweep.open_storage(storage, 60))


def test_equal_split_is_the_paper_plan():
    params = sweep.equal_split(sweep.SweepSettings(stages=3), 30)
    assert params == pytest.approx({"jump_1": 2 / 3, "jump_2": 1 / 3})
    steps = sweep.equal_split(sweep.SweepSettings(stages=4, search_steps=True), 30)
    assert [steps[f"steps_{i}"] for i in (1, 2, 3)] == [8, 8, 7]


def test_invalid_suggestions_name_the_problem(tmp_path):
    settings = sweep.SweepSettings(scale="tiny")
    close = optuna.trial.FixedTrial({"jump_1": 0.50, "jump_2": 0.48})
    with pytest.raises(sweep.InvalidSuggestion, match="min_gap"):
        sweep.suggest_config(close, settings, tmp_path)
    crossed = optuna.trial.FixedTrial({"jump_1": 0.3, "jump_2": 0.6})
    with pytest.raises(sweep.InvalidSuggestion, match=r"stage 1 .* shorter than min_gap"):
        sweep.suggest_config(crossed, settings, tmp_path)
    steps = sweep.SweepSettings(scale="tiny", search_steps=True)
    greedy = optuna.trial.FixedTrial({"jump_1": 0.7, "jump_2": 0.3, "steps_1": 3, "steps_2": 3})
    with pytest.raises(sweep.InvalidSuggestion, match="no step"):
        sweep.suggest_config(greedy, steps, tmp_path)
    ok = optuna.trial.FixedTrial({"jump_1": 0.7, "jump_2": 0.3, "steps_1": 1, "steps_2": 2})
    cfg = sweep.suggest_config(ok, steps, tmp_path)
    assert cfg.jump_points == (0.7, 0.3) and cfg.stage_steps == (1, 2, 3)
    assert plan_for(cfg).total_steps == 6


def _finished(number, cost, fvd_at):
    return create_trial(
        values=[fvd_at[max(fvd_at)], cost],
        params={"jump_1": 0.5},
        distributions={"jump_1": FloatDistribution(0, 1)},
        user_attrs={"cost": cost, "fvd_at": {str(k): v for k, v in fvd_at.items()}},
    )


def test_pruning_rule_needs_a_cheaper_and_clearly_better_trial():
    cheap_good = _finished(0, cost=1.0, fvd_at={50: 100.0, 100: 80.0})
    dear_best = _finished(1, cost=3.0, fvd_at={50: 50.0, 100: 40.0})
    finished = [cheap_good, dear_best]
    # at cost 2: only the cheap trial may dominate; 100 * 1.1 < 120 prunes, < 105 does not
    assert sweep.dominating_trial(finished, 50, 2.0, 120.0, 0.1) is cheap_good
    assert sweep.dominating_trial(finished, 50, 2.0, 105.0, 0.1) is None
    # the cheapest trial is never pruned by a dearer one, however much better
    assert sweep.dominating_trial(finished, 50, 0.5, 500.0, 0.1) is None
    # no score at that step: nothing to compare with
    assert sweep.dominating_trial(finished, 75, 2.0, 500.0, 0.1) is None


def test_settings_and_config_round_trip(tmp_path):
    with pytest.raises(ValueError, match="min_gap"):
        sweep.SweepSettings(stages=4, min_gap=0.3)
    with pytest.raises(ValueError, match="unknown scale"):
        sweep.SweepSettings(scale="huge")
    cfg = Config().replace(jump_points=(0.7, 0.3), stage_steps=(10, 12, 8), renoise=False)
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml("a comment\nover two lines"))
    assert Config.from_file(path) == cfg


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("TPDIFF_CACHE", str(cache))
    real, calls = sweep.train_and_score, []

    def flaky(cfg, *args, **kw):
        calls.append(cfg.name)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(cfg, *args, **kw)

    monkeypatch.setattr(sweep, "train_and_score", flaky)
    summary = sweep.sweep(TINY, 3, tmp_path, storage=f"journal:{tmp_path / 'j.log'}")
    study = load(f"journal:{tmp_path / 'j.log'}", TINY.study_name)
    states = [t.state for t in study.trials if "trained_steps" in t.user_attrs or
              "error" in t.user_attrs]  # fmt: skip
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    assert len(failed) == 1
    assert failed[0].user_attrs["error"] == "RuntimeError: CUDA out of memory (simulated)"
    # the failure does not use the budget: the study goes on to 3 finished trials
    assert states.count(TrialState.COMPLETE) == 3 and summary["spent"] == 3
    # the first trial is the paper's equal split, the reference point of the report
    first = study.trials[0]
    assert first.user_attrs["reference"] and first.params == pytest.approx(
        {"jump_1": 2 / 3, "jump_2": 1 / 3}
    )
    frame = pd.read_csv(tmp_path / "trials.csv")
    assert set(frame["state"]) >= {"COMPLETE", "FAIL"}
    assert frame.loc[frame["state"] == "FAIL", "error"].str.contains("out of memory").all()
    for name in ("pareto.png", "summary.json", "report.md"):
        assert (tmp_path / name).stat().st_size > 0
    best = sorted((tmp_path / "best").glob("trial_*.toml"))
    assert best and len(best) == len(summary["pareto"])
    # the scores are put in context: references at the trials' n, intervals, PA-md-digit
    refs = summary["references"]
    assert refs["n"] == SCALES["tiny"].eval_samples
    assert refs["real_FVD-md-lo"] <= refs["real_FVD-md"] <= refs["real_FVD-md-hi"]
    assert refs["noise_FVD-md"] > refs["real_FVD-md"]
    for p in summary["pareto"]:
        assert p["FVD-md-lo"] <= p["values"][0] <= p["FVD-md-hi"]
        assert 0 <= p["PA-md-digit"] <= 1
    assert "real vs real" in (tmp_path / "report.md").read_text()
    for path in best:
        cfg = Config.from_file(path)
        assert cfg.method == "tpdiff" and len(cfg.jump_points) == 2
    # a rerun with the budget already spent runs nothing and changes nothing
    before = len(study.trials)
    sweep.sweep(TINY, 3, tmp_path, storage=f"journal:{tmp_path / 'j.log'}")
    assert len(load(f"journal:{tmp_path / 'j.log'}", TINY.study_name).trials) == before
    # resuming with other settings is refused
    with pytest.raises(ValueError, match="other settings"):
        other = sweep.SweepSettings(scale="tiny", prune_after=100, cost="infer")
        sweep.sweep(other, 3, tmp_path, storage=f"journal:{tmp_path / 'j.log'}",
                    study_name=TINY.study_name)  # fmt: skip
    # ... and so is resuming it with other code: its trials would be mixed with this code's
    monkeypatch.setattr(sweep, "code_revision", lambda: "f" * 40)
    with pytest.raises(ValueError, match="another job .*'code'.*--study.*--fresh"):
        sweep.sweep(TINY, 4, tmp_path, storage=f"journal:{tmp_path / 'j.log'}")
    assert len(load(f"journal:{tmp_path / 'j.log'}", TINY.study_name).trials) == before


def test_a_study_without_an_identity_is_not_resumed(tmp_path, cache, monkeypatch):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(storage=storage, study_name=TINY.study_name,
                                directions=["minimize", "minimize"])  # fmt: skip
    study.set_user_attr("settings", dataclasses.asdict(TINY))  # an older harness's study
    del study
    with pytest.raises(ValueError, match="records no code revision"):
        sweep.sweep(TINY, 1, tmp_path)
    # --fresh moves the old folder aside (nothing is deleted) and starts a new study
    monkeypatch.setenv("TPDIFF_CACHE", str(cache))
    summary = sweep.sweep(TINY, 1, tmp_path, fresh=True)
    assert summary["spent"] == 1
    aside = [p for p in tmp_path.parent.iterdir()
             if p.name.startswith(f"{tmp_path.name}.superseded-")]  # fmt: skip
    assert len(aside) == 1 and (aside[0] / "study.db").is_file()
    new = load(storage, TINY.study_name)
    options = sweep.MetricOptions(evaluator=SCALES["tiny"].evaluator, device="cpu")
    assert new.user_attrs["job"] == sweep.job_identity(TINY, options)


def test_killed_sweep_resumes_from_stored_trials(tmp_path, cache):
    storage = f"journal:{tmp_path / 'journal.log'}"
    args = ["--trials", "4", "--storage", storage, "--out", str(tmp_path), "--prune-after", "100"]
    proc = run_cli(args, cache)
    deadline = time.time() + 300
    study = None
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if not (tmp_path / "journal.log").exists():
            continue
        try:
            study = load(storage, TINY.study_name)
        except KeyError:
            continue
        states = [t.state for t in study.trials]
        if TrialState.COMPLETE in states and states[-1] == TrialState.RUNNING:
            running = study.trials[-1]
            if "run" in running.user_attrs:  # training has begun
                break
    assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {t.number: t.values for t in load(storage, TINY.study_name).trials
              if t.state == TrialState.COMPLETE}  # fmt: skip
    killed = running.number

    again = run_cli(args, cache)
    output = again.communicate(timeout=600)[0]
    assert again.returncode == 0, output
    assert f"trials [{killed}] lost their worker" in output
    trials = load(storage, TINY.study_name).trials
    assert all(t.state != TrialState.RUNNING for t in trials)
    after = {t.number: t.values for t in trials if t.state == TrialState.COMPLETE}
    assert {n: after[n] for n in before} == before  # kept, not redone
    orphan = trials[killed]
    study = load(storage, TINY.study_name)
    assert orphan.state == TrialState.FAIL and "died" in study.user_attrs["orphaned"][str(killed)]
    retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
    retry = [t for t in trials if retried(t) == killed]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE
    assert retry[0].params == orphan.params
    assert sweep.spent(trials) == 4


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_two_workers_share_one_study(tmp_path, cache, kind):
    storage = (f"journal:{tmp_path / 'journal.log'}" if kind == "journal"
               else f"sqlite:///{tmp_path / 'study.db'}")  # fmt: skip
    args = ["--trials", "4", "--storage", storage, "--out", str(tmp_path), "--prune-after", "100"]
    workers = [run_cli(args, cache) for _ in range(2)]
    for w in workers:
        output = w.communicate(timeout=600)[0]
        assert w.returncode == 0, output
    trials = load(storage, TINY.study_name).trials
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    # the budget is shared: 4 trials, plus at most one started by the other worker meanwhile
    assert 4 <= sweep.spent(trials) <= 5
    assert len({tuple(sorted(t.params.items())) for t in complete}) == len(complete)
    # every trial names one of the two worker processes (which one took how many depends on
    # start-up timing, so it is not asserted)
    assert len({t.user_attrs["worker"] for t in trials if "worker" in t.user_attrs}) <= 2
    for t in complete:  # each finished trial's run was scored at every evaluation step
        evals = pd.read_csv(tmp_path / "runs" / t.user_attrs["run"] / "evals.csv")
        assert sorted(evals["step"].unique()) == [2, 4]


def test_the_report_says_whether_the_front_is_resolved_on_quality():
    ref = {"number": 0, "FVD-md-lo": 900.0, "FVD-md-hi": 1100.0}
    clear = {"number": 3, "FVD-md-lo": 500.0, "FVD-md-hi": 800.0}
    overlapping = {"number": 5, "FVD-md-lo": 1000.0, "FVD-md-hi": 1500.0}
    assert "[3]" in sweep.resolution_note([ref, clear, overlapping], ref)
    note = sweep.resolution_note([ref, overlapping], ref)
    assert "by cost, not by quality" in note

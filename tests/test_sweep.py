"""The stage-boundary sweep: search space, pruning rule, storage, resume after a kill,
several workers on one storage, failing trials, outputs. The end-to-end tests train real
tiny configs (`--scale tiny`)."""

import dataclasses
import json
import multiprocessing
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

import harness.studies.sweep.report as sweep_report
import harness.studies.sweep.run as sweep
import harness.studies.sweep.storage as sweep_storage
from harness.common.config import Config
from harness.metrics import MetricOptions
from harness.metrics.evaluator import load_evaluator
from harness.pipeline import train
from harness.pipeline.build import plan_for
from harness.studies.core.scale import SCALES

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
    return optuna.load_study(study_name=name, storage=sweep_storage.open_storage(storage, 60))


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


def test_the_equal_split_trains_the_paper_settings_own_config(tmp_path):
    """The paper's points stay the default, so the equal split is the same training config
    (and run folder) as the paper suite's and the ablations' TPDiff; any other points are
    kept."""
    settings = sweep.SweepSettings(scale="tiny")
    equal = sweep.suggest_config(optuna.trial.FixedTrial(sweep.equal_split(settings, 6)),
                                 settings, tmp_path)  # fmt: skip
    paper = sweep.trial_config(SCALES["tiny"], tmp_path, method="tpdiff", num_stages=3)
    assert equal.jump_points == () and equal.name == paper.name
    assert plan_for(equal).jump_points == pytest.approx((2 / 3, 1 / 3))
    moved = optuna.trial.FixedTrial({"jump_1": 0.7, "jump_2": 1 / 3})
    assert sweep.suggest_config(moved, settings, tmp_path).name != paper.name


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


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("TPDIFF_CACHE", str(cache))
    real, calls = sweep.train_and_score, []

    def flaky(arms, *args, **kw):
        calls.append(arms[0].cfg.name)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(arms, *args, **kw)

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
    assert refs["n"] == SCALES["tiny"].final_n
    assert set(summary["reference_seeds"]) == {"0"}  # the tiny scale has one seed
    assert [c["number"] for c in summary["complete"]] == [
        t.number for t in study.trials if t.state == TrialState.COMPLETE]  # fmt: skip
    assert all(c["FVD-md-lo"] <= c["values"][0] <= c["FVD-md-hi"] for c in summary["complete"])
    assert refs["real_FVD-md-lo"] <= refs["real_FVD-md"] <= refs["real_FVD-md-hi"]
    assert refs["noise_FVD-md"] > refs["real_FVD-md"]
    for p in summary["pareto"]:
        assert p["FVD-md-lo"] <= p["values"][0] <= p["FVD-md-hi"]
        assert 0 <= p["PA-md-digit"] <= 1
    assert "real vs real" in (tmp_path / "report.md").read_text()
    params = {t.number: t.params for t in study.trials}
    for path in best:  # each runs its trial's jump points (the equal split: the default ones)
        cfg, number = Config.from_file(path), int(path.stem.removeprefix("trial_"))
        assert cfg.method == "tpdiff"
        assert plan_for(cfg).to_dict()["jump_points"] == pytest.approx(
            [params[number]["jump_1"], params[number]["jump_2"]])  # fmt: skip
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
    options = MetricOptions(evaluator=SCALES["tiny"].evaluator, device="cpu")
    assert new.user_attrs["job"] == sweep.job_identity(TINY, options)


@pytest.mark.slow
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
    assert sweep_storage.spent(trials) == 4


def _pop_at(storage: str, start: float, numbers) -> None:
    study = optuna.load_study(study_name="queue", storage=sweep_storage.open_storage(storage, 60))
    while time.time() < start:
        pass
    numbers.put(study.ask().number)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_two_processes_never_pop_the_same_queued_trial_from_sqlite(tmp_path):
    """The root cause of a worker's "Cannot tell a COMPLETE trial": Optuna pops a queued
    trial by reading WAITING and writing RUNNING under SELECT ... FOR UPDATE, which SQLite
    ignores, so two processes both ran the paper's equal split (13 of 20 rounds of this test
    on Optuna's plain RDBStorage). The sweep's storage takes SQLite's write lock at BEGIN."""
    fork = multiprocessing.get_context("fork")
    for i in range(8):
        storage = f"sqlite:///{tmp_path / f'queue{i}.db'}"
        study = optuna.create_study(
            study_name="queue", storage=sweep_storage.open_storage(storage, 60)
        )
        study.enqueue_trial({"x": 0.5})
        numbers, start = fork.Queue(), time.time() + 0.3
        procs = [fork.Process(target=_pop_at, args=(storage, start, numbers)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert all(p.exitcode == 0 for p in procs)
        assert sorted(numbers.get(timeout=10) for _ in procs) == [0, 1], f"round {i}"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_orphans_are_failed_once_and_their_retry_is_not_mistaken_for_one(tmp_path):
    storage = f"journal:{tmp_path / 'j.log'}"
    study = optuna.create_study(study_name="s", storage=sweep_storage.open_storage(storage, 60),
                                directions=["minimize", "minimize"])  # fmt: skip
    dead = f"{sweep_storage.socket.gethostname()}:{_dead_pid()}"
    lost = study.ask({"jump_1": FloatDistribution(0, 1)})
    lost.set_user_attr("worker", dead)
    other = optuna.load_study(study_name="s", storage=sweep_storage.open_storage(storage, 60))
    stale = other.get_trials(deepcopy=False)  # what a second worker starting now would see
    assert sweep_storage.recover_orphans(study) == [lost.number]
    failed = study.trials[lost.number]
    assert failed.state == TrialState.FAIL and dead in failed.user_attrs["error"]
    assert dead in study.user_attrs["orphaned"][str(lost.number)]
    # the second worker raced on the same orphan: the storage lets only one fail it and
    # queue its retry
    other.get_trials = lambda *a, states=None, **kw: [t for t in stale if t.state in states]
    assert sweep_storage.recover_orphans(other) == []
    retries = [
        t for t in study.trials if sweep_storage.RETRY.retried_trial_number(t) == lost.number
    ]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING
    # the queued copy keeps the parameters, not the dead worker's stamp or error: popped by
    # a live worker that has not stamped it yet, it is not taken for an orphan
    assert "worker" not in retries[0].user_attrs and "error" not in retries[0].user_attrs
    popped = study.ask()
    assert popped.number == retries[0].number and popped.params == lost.params
    assert sweep_storage.recover_orphans(other) == []
    assert study.trials[popped.number].state == TrialState.RUNNING


STORAGES = ["sqlite", "journal", "postgresql"]


def storage_for(kind: str, folder: Path, request) -> str:
    if kind == "postgresql":  # a fresh database on a throwaway server (tests/pg_server.py)
        return request.getfixturevalue("postgres_url")
    return f"journal:{folder / 'journal.log'}" if kind == "journal" else (
        f"sqlite:///{folder / 'study.db'}")  # fmt: skip


def run_workers(n, storage, out, cache, trials=4, study="", seeds=None):
    """n `python -m harness.sweep` processes on one storage, started together; the study's
    trials once all have exited 0."""
    args = ["--trials", str(trials), "--storage", storage, "--out", str(out),
            "--prune-after", "100", *(["--study", study] if study else [])]  # fmt: skip
    workers = [
        run_cli([*args, *(["--seed", str(seeds[i])] if seeds else [])], cache) for i in range(n)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    for w, output in zip(workers, outputs):
        assert w.returncode == 0, output
    return load(storage, study or TINY.study_name)


def assert_accounted(study: optuna.Study, trials: int, workers: int) -> None:
    """Every trial complete, pruned with a reason or failed with a reason; none left
    running or queued; the budget of finished trials met, overshot by at most one trial in
    flight per other worker; no configuration finished twice."""
    every = study.trials
    assert [t.number for t in every] == list(range(len(every)))
    left = [
        (t.number, t.state.name)
        for t in every
        if t.state in (TrialState.RUNNING, TrialState.WAITING)
    ]
    assert not left, f"trials left unfinished: {left}"
    orphaned = study.user_attrs.get("orphaned", {})
    for t in every:
        if t.state == TrialState.FAIL:
            assert t.user_attrs.get("error") or orphaned.get(str(t.number)), t
        if t.state == TrialState.PRUNED:
            assert t.user_attrs.get("pruned_reason"), t
    complete = [t for t in every if t.state == TrialState.COMPLETE]
    assert trials <= sweep_storage.spent(every) <= trials + workers - 1
    assert len({tuple(sorted(t.params.items())) for t in complete}) == len(complete)
    assert len({t.user_attrs["worker"] for t in every if "worker" in t.user_attrs}) <= workers


@pytest.mark.slow
@pytest.mark.parametrize("kind", STORAGES)
def test_two_workers_share_one_study(tmp_path, cache, kind, request):
    storage = storage_for(kind, tmp_path, request)
    study = run_workers(2, storage, tmp_path, cache)
    assert_accounted(study, 4, 2)
    # which worker took how many trials depends on start-up timing, so it is not asserted
    for t in study.trials:  # each finished trial's run was scored at every evaluation step
        if t.state == TrialState.COMPLETE:
            evals = pd.read_csv(tmp_path / "runs" / t.user_attrs["run"] / "evals.csv")
            assert sorted(evals["step"].unique()) == [2, 4]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_four_workers_share_one_study(tmp_path, cache, kind, request):
    storage = storage_for(kind, tmp_path, request)
    assert_accounted(run_workers(4, storage, tmp_path, cache, trials=4), 4, 4)


@pytest.mark.slow
def test_the_sweep_starts_its_own_workers(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("TPDIFF_CACHE", str(cache))  # the spawned workers inherit it
    summary = sweep.sweep(TINY, 3, tmp_path, workers=2)
    study = load(f"sqlite:///{tmp_path / 'study.db'}", TINY.study_name)
    assert_accounted(study, 3, 2)
    assert summary["spent"] >= 3 and len(summary["complete"]) >= 3
    assert set(summary["time"]) == {"trials", "reference seeds"}
    assert (tmp_path / "pareto.png").stat().st_size > 0  # the report, written once at the end


@pytest.mark.slow
def test_a_sweep_adopts_finished_runs_instead_of_training_them(tmp_path, cache, monkeypatch):
    """The source runs are named as the paper suite names its own (`dit-flow-tpdiff`,
    `dit-flow-tpdiff-seed1`), not by hash: adopted, each takes the sweep's name."""
    monkeypatch.setenv("TPDIFF_CACHE", str(cache))
    monkeypatch.setitem(SCALES, "tiny", dataclasses.replace(SCALES["tiny"], seeds=2))
    source = tmp_path / "paper" / "runs"
    equal = sweep.suggest_config(optuna.trial.FixedTrial(sweep.equal_split(TINY, 6)), TINY,
                                 source)  # fmt: skip
    trained, changes = sweep.split_sampling(equal)
    arm = sweep.curve_and_final(trained.replace(name="dit-flow-tpdiff"), SCALES["tiny"],
                                {"": changes}, sweep.CURVE, curve_changes=changes)  # fmt: skip
    options = MetricOptions(evaluator=SCALES["tiny"].evaluator, device="cpu")
    made = sweep.train_and_score([arm], options, seeds=(0, 1))
    assert sorted(p.name for p in source.iterdir() if p.is_dir()) == [
        "dit-flow-tpdiff", "dit-flow-tpdiff-seed1"]  # fmt: skip

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run of the same config and seed was trained again")

    monkeypatch.setattr(train, "draw_training_batch", no_training)
    again = sweep.sweep(TINY, 1, tmp_path / "b", seed=0, reuse=source)
    runs = sorted(p for p in (tmp_path / "b" / "runs").iterdir() if p.is_dir())
    assert [p.name for p in runs] == [trained.name, f"{trained.name}-seed1"]
    for run in runs:  # renamed inside too, so the run folder check takes it as its own
        assert json.loads((run / "config.json").read_text())["config"]["name"] == run.name
    finals = {int(r["seed"]): r["FVD-md"] for r in made if r["role"] == "final"}
    study = load(f"sqlite:///{tmp_path / 'b' / 'study.db'}", TINY.study_name)
    assert again["complete"][0]["values"][0] == pytest.approx(finals[0])  # the same weights
    assert study.user_attrs["reference_seeds"]["1"]["FVD-md"] == pytest.approx(finals[1])
    with pytest.raises(FileNotFoundError, match="--reuse .*no such runs folder"):
        sweep.sweep(TINY, 1, tmp_path / "c", reuse=tmp_path / "missing")


STRESS_ROUNDS = 20


@pytest.mark.stress
@pytest.mark.parametrize("workers", [2, 4])
@pytest.mark.parametrize("kind", STORAGES)
def test_workers_stress(tmp_path, cache, kind, workers, request):
    """The several-workers case again and again (`python -m pytest -m stress`): each round a
    new study on the same storage and folder, 2 trials. Each worker keeps its own sampler
    seed, so after the first rounds the trials' runs are found trained and scored: the
    trials finish within moments of each other, the worst case for the storage's queue
    (every round starts with the paper's equal split enqueued for all workers to pop)."""
    storage = storage_for(kind, tmp_path, request)
    seeds = list(range(workers))
    for i in range(STRESS_ROUNDS):
        study = run_workers(workers, storage, tmp_path, cache, trials=2, study=f"stress-{i}",
                            seeds=seeds)  # fmt: skip
        assert_accounted(study, 2, workers)


BAD_INPUT = {  # argument -> what the one-line error must name
    "--storage=foo://bar": ("--storage 'foo://bar'", "journal:PATH"),
    "--storage=journal:": ("--storage 'journal:'", "journal:PATH"),
    "--out=somefile.txt/sub": ("--out somefile.txt/sub", "is a file, not a folder; choose another"),
}


def test_bad_storage_or_out_is_one_line_and_creates_nothing(tmp_path):
    """Real command lines, run at once (each pays the imports): exit 2, one line naming the
    value and the fix, no traceback, and no folder made (the default --out included)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    procs = {}
    for arg in BAD_INPUT:
        cwd = tmp_path / arg.split("=")[1].replace("/", "_").replace(":", "_")
        cwd.mkdir()
        (cwd / "somefile.txt").write_text("in the way\n")
        cmd = [sys.executable, "-m", "harness.sweep", "--scale", "tiny", "--trials", "1", arg]
        procs[arg] = (cwd, subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True))  # fmt: skip
    for arg, (cwd, proc) in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert lines[0].startswith("python -m harness.sweep: error: "), err
        assert all(text in lines[0] for text in BAD_INPUT[arg]), err
        assert [p.name for p in cwd.iterdir()] == ["somefile.txt"]  # no folder made


def test_storage_check_names_the_value_and_the_forms(tmp_path):
    (tmp_path / "somefile.txt").write_text("in the way\n")
    bad = {
        "nonsense": "is not a storage",
        "foo://bar": "unknown database kind 'foo'",
        "journal:": "names no journal file",
        "journal:  ": "names no journal file",
        f"journal:{tmp_path / 'somefile.txt' / 'j.log'}": "is a file, not a folder",
        f"sqlite:///{tmp_path / 'somefile.txt' / 's.db'}": "is a file, not a folder",
        "postgresql+nodriver://u@h/db": "unknown database kind",
    }
    for spec, why in bad.items():
        with pytest.raises(ValueError, match=why):
            sweep_storage.check_storage(spec)
    with pytest.raises(ValueError, match=r"postgresql\+psycopg2://USER@HOST:PORT/DB"):
        sweep_storage.check_storage("foo://bar")
    # a password is not echoed
    with pytest.raises(ValueError, match=r"\*\*\*") as err:
        sweep_storage.check_storage("foo://user:secret@host/db")
    assert "secret" not in str(err.value)
    for good in (f"journal:{tmp_path / 'a' / 'j.log'}", f"sqlite:///{tmp_path / 's.db'}",
                 "postgresql+psycopg2://postgres@127.0.0.1:5432/db"):  # fmt: skip
        if "psycopg2" in good:
            pytest.importorskip("psycopg2")
        sweep_storage.check_storage(good)
    assert [p.name for p in tmp_path.iterdir()] == ["somefile.txt"]  # checks create nothing


def _trial(number: int, fvd: float, lo: float, hi: float, reference: bool = False):
    attrs = {"FVD-md-lo": lo, "FVD-md-hi": hi} | ({"reference": "paper"} if reference else {})
    t = create_trial(values=[fvd, 1.0], params={"jump_1": 0.5}, user_attrs=attrs,
                     distributions={"jump_1": FloatDistribution(0.05, 0.95)})  # fmt: skip
    t.number = number
    return t


def test_front_verdicts_read_the_gap_against_its_smallest_detectable_effect():
    ref = _trial(0, 1000.0, 900.0, 1100.0, reference=True)
    clear = _trial(3, 400.0, 300.0, 500.0)
    close = _trial(5, 950.0, 850.0, 1050.0)
    seeds = {"0": {"FVD-md": 1000.0}, "1": {"FVD-md": 1040.0}, "2": {"FVD-md": 960.0}}
    found = sweep_report.front_verdicts([ref, clear, close], ref, seeds)
    by = {v["number"]: v for v in found}
    assert set(by) == {3, 5} and by[3]["seed_spread"] == pytest.approx(40.0)
    # one seed each: se^2 = 2 (100 / 1.645)^2 + 2 x 40^2, so se = 102.9; Holm over 2 rows
    assert by[3]["verdict"] == "better" and by[3]["gap"] == pytest.approx(-600)
    # (1.960 + 0.842) x 102.9 at Holm's strictest threshold, 0.10 / 2, whatever its rank
    assert by[5]["verdict"] == "within noise" and by[5]["mde"] == pytest.approx(288.3, abs=0.5)
    assert by[5]["mde_share"] == pytest.approx(288.3 / 1000, abs=1e-3)  # of the 3 seeds' mean
    note = sweep_report.verdict_note(found)
    assert "trial 5: **within noise**" in note
    assert "beat the equal split beyond the noise: [3]" in note
    assert "by cost, not by quality" in sweep_report.verdict_note([by[5]])
    assert sweep_report.front_verdicts([clear], None, seeds) == []
    # one seed of the equal split: no spread, so no verdict, and the note says why
    assert sweep_report.front_verdicts([ref, clear], ref, {"0": seeds["0"]}) == []
    assert "not judged yet" in sweep_report.verdict_note([], 1)


def test_a_front_trial_at_noise_level_is_not_tested():
    ref = _trial(0, 1000.0, 900.0, 1100.0, reference=True)
    blank = _trial(4, 400.0, 300.0, 500.0)
    for t, pa in ((ref, 0.8), (blank, 0.1)):  # blank's prompts at chance
        t.user_attrs["PA-md-digit"] = pa
    seeds = {"0": {"FVD-md": 1000.0}, "1": {"FVD-md": 1040.0}, "2": {"FVD-md": 960.0}}
    refs = {"noise_FVD-md": 30000.0, "chance_PA-md-digit": 0.1, "n": 1024}
    (row,) = sweep_report.front_verdicts([ref, blank], ref, seeds, refs)
    assert row["verdict"] == "within noise" and row["p_holm"] is None
    assert "not tested, trial 4 is at noise level" in row["why"]
    (called,) = sweep_report.front_verdicts([ref, blank], ref, seeds)  # no references: tested
    assert called["verdict"] == "better"

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import harness.pipeline.evaluate as evaluate
import harness.studies.core.scale as scale_table
import harness.studies.core.train_and_score as train_and_score
import harness.studies.paper.run as paper
from harness.common.config import METHOD_FIELDS
from harness.measure.cost import PAIRS
from harness.pipeline.provenance import FolderInUse
from harness.studies.core.scale import SCALES


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TPDIFF_CACHE", str(out / "cache"))
        summary = paper.paper(out, "smoke", workers=1)  # in this process: monkeypatches apply
    return out, summary


def test_matched_runs_differ_only_in_method_fields(tmp_path):
    scale = SCALES["cpu"]
    configs = {s.name: paper.run_config(s, scale, tmp_path) for s in paper.run_specs("cpu")}
    for backbone, form in PAIRS:
        a = configs[f"{backbone}-{form}-vanilla"].to_dict()
        b = configs[f"{backbone}-{form}-tpdiff"].to_dict()
        assert {k for k in a if a[k] != b[k]} <= set(METHOD_FIELDS)
    noalign = configs["dit-flow-tpdiff-noalign"].to_dict()
    tp = configs["dit-flow-tpdiff"].to_dict()
    assert {k for k in tp if tp[k] != noalign[k]} == {"name", "align"}
    # paired seeds: seed s of both methods differs from seed 0 only in its seed and name
    assert set(configs) >= {"unet-ddim-vanilla-seed2", "unet-ddim-tpdiff-seed2"}
    for method in ("vanilla", "tpdiff"):
        a, b = (
            configs[f"dit-flow-{method}"].to_dict(),
            configs[f"dit-flow-{method}-seed2"].to_dict(),
        )
        assert {k for k in a if a[k] != b[k]} == {"name", "seed"} and b["seed"] == a["seed"] + 2


def test_a_replica_shifts_every_seed(tmp_path):
    main = paper.run_specs("cpu", paper.design("cpu"))
    replica = paper.run_specs("cpu", paper.design("cpu", seeds=3, offset=10))
    assert len(main) == len(replica) and {s.seed for s in main} == {0, 1, 2}
    assert {s.seed for s in replica} == {10, 11, 12}
    assert {s.name for s in replica}.isdisjoint({s.name for s in main})
    assert paper.design("cpu").seeds == (0, 1, 2)
    with pytest.raises(ValueError, match="--seeds must be at least 1"):
        paper.design("cpu", seeds=0)


@pytest.mark.slow  # the smoke suite they share takes about 80 s
def test_smoke_suite_writes_every_table_and_plot(smoke):
    out, summary = smoke
    for backbone in ("dit", "unet"):
        entry = summary["backbones"][backbone]
        for key in ("inference_speedup", "flop_ratio_bound", "training_step_cost_ratio",
                    "training_cost_ratio"):  # fmt: skip
            assert key in entry, (backbone, key)
        assert entry["flop_ratio_bound"] > 1
    assert json.loads((out / "summary.json").read_text())["backbones"] == summary["backbones"]
    evals = pd.read_csv(out / "evals.csv")
    runs = [s.name for s in paper.run_specs("smoke")]
    scale = SCALES["smoke"]
    # curve points of the matched runs; final points of every run (the ablation and the
    # seed runs included); renoise off at the end of each aligned TPDiff run
    curve, final = evals[evals.role == "curve"], evals[evals.role == "final"]
    seeds = scale.seeds
    # the last snapshot of a main run is its final score (which carries the curve metric)
    assert len(curve) == 4 * seeds * (scale.curve.evals - 1) and set(curve.n) == {scale.curve.n}
    assert len(final) == len(runs) + 2 * scale.renoise_seeds and set(final.n) == {scale.final_n}
    assert sorted(set(evals.seed)) == list(range(seeds))
    assert not evals.duplicated(["run", "step", "renoise", "n"]).any()
    assert evals["train_threads"].notna().all() and evals["sample_s"].gt(0).all()
    for col in ("KVD-md-lo", "KVD-md-hi", "motion-gap", "motion-gap-lo"):
        assert evals[col].notna().all(), col
    assert (
        final["FVD-md-lo"].le(final["FVD-md"]).all()
        and final["FVD-md"].le(final["FVD-md-hi"]).all()
    )
    refs = pd.read_csv(out / "references.csv")
    assert sorted(zip(refs.kind, refs.n)) == sorted(
        (k, n) for k in ("chance", "noise", "real") for n in (scale.curve.n, scale.final_n)
    )
    assert summary["real_FVD-md"] < summary["noise_FVD-md"]
    claims = {(v["claim"], v["backbone"]) for v in summary["verdicts"]}
    assert claims == {(c, b) for c in ("inference", "training", "alignment", "renoise")
                      for b in ("dit", "unet")}  # fmt: skip
    # tiny models trained 8 steps are at noise level: nothing may be called reproduced
    assert all(v["verdict"] != "reproduced" for v in summary["verdicts"]), summary["verdicts"]
    # every row knows what produced it, and carries its training cost for the report
    for col in ("identity", "config_hash", "checkpoint", "sampling", "metrics_key", "n", "git",
                "train_flops", "train_wall_s", "backbone", "variant", "role", "seed"):  # fmt: skip
        assert evals[col].notna().all(), col
    assert not evals.identity.duplicated().any()
    job = json.loads((out / "job.json").read_text())
    assert job["scale"] == "smoke" and set(job["runs"]) == set(runs)
    files = ["fig5_quality_vs_flops.png", "fig5_quality_vs_time.png", "fig6_renoise_strip.png",
             "report.md", "cost_stages.csv", "table1_latency.csv", "verdicts.csv"]  # fmt: skip
    for name in files:
        assert (out / name).stat().st_size > 0
    assert sorted(p.stem for p in (out / "grids").glob("*.png")) == sorted(
        r for r in runs if "-seed" not in r
    )
    # a few uint8 samples of every run's final, for reports without checkpoints
    for name in runs:
        kept = np.load(out / "finals" / f"{name}.npz")
        assert kept["videos"].dtype == np.uint8 and len(kept["captions"]) == scale.grid_samples
    sweep = pd.read_csv(out / "inference_batches.csv")
    assert sorted(set(sweep.batch)) == list(scale.batches) and set(sweep.backbone) == {
        "dit",
        "unet",
    }
    assert job["seeds"] == [0, 1] and job["environment"]["threads"] >= 1
    assert len(job["instruments"]["evaluator_weights"]) == 16
    assert set(json.loads((out / "phases.json").read_text())) >= {"train and score", "samples"}
    verdicts = {(v["claim"], v["backbone"]): v for v in summary["verdicts"]}
    assert verdicts[("training", "dit")]["seeds"] == [0, 1]
    assert verdicts[("training", "dit")]["provisional"]  # 2 seeds < 3


@pytest.mark.slow  # the smoke suite they share takes about 80 s
def test_rerun_resumes_without_recomputing(smoke, monkeypatch):
    out, summary = smoke
    before = (out / "evals.csv").read_text()

    def fail(*args, **kwargs):
        raise AssertionError("a finished evaluation was recomputed")

    monkeypatch.setattr(evaluate, "score_checkpoint", fail)
    monkeypatch.setattr(paper, "generate", fail)
    monkeypatch.setattr(paper, "sample_main", fail)
    monkeypatch.setattr(paper, "cost_tables", fail)
    monkeypatch.setattr(paper, "batch_sweep", fail)
    monkeypatch.setenv("TPDIFF_CACHE", str(out / "cache"))
    again = paper.paper(out, "smoke", workers=1)
    assert (out / "evals.csv").read_text() == before
    assert again["backbones"] == summary["backbones"]


def _copy(smoke, tmp_path):
    out = tmp_path / "suite"
    shutil.copytree(smoke[0], out)
    return out


def _never(*args, **kwargs):
    raise AssertionError("the suite started work in a folder it had to refuse")


@pytest.mark.slow  # the smoke suite they share takes about 80 s
def test_a_changed_config_is_refused_before_any_work(smoke, tmp_path, monkeypatch):
    """The stale-score check: a fresh clone (no runs/) whose baseline lr changed must not
    reuse, or silently mix with, the scores in the folder."""
    out = _copy(smoke, tmp_path)
    shutil.rmtree(out / "runs")  # as in a fresh clone: run folders are not committed
    before = (out / "evals.csv").read_text()
    baselines = tmp_path / "baselines"
    shutil.copytree(scale_table.BASELINES, baselines)
    toml = baselines / "dit-tpdiff.toml"
    toml.write_text(toml.read_text().replace("lr = 2e-3", "lr = 1e-3"))
    monkeypatch.setattr(scale_table, "BASELINES", baselines)
    monkeypatch.setattr(train_and_score, "train_main", _never)
    with pytest.raises(FolderInUse) as err:
        paper.paper(out, "smoke", workers=1)
    message = str(err.value)
    assert str(out) in message and "--out" in message and "--fresh" in message
    assert "runs.dit-flow-tpdiff" in message
    assert (out / "evals.csv").read_text() == before


@pytest.mark.slow  # the smoke suite they share takes about 80 s
def test_another_code_revision_is_refused(smoke, tmp_path, monkeypatch):
    out = _copy(smoke, tmp_path)
    monkeypatch.setattr(paper, "code_revision", lambda: "0" * 40)
    monkeypatch.setattr(train_and_score, "train_main", _never)
    with pytest.raises(FolderInUse, match="code: .* there, '0000"):
        paper.paper(out, "smoke", workers=1)


@pytest.mark.slow  # the smoke suite they share takes about 80 s
def test_a_score_of_other_weights_is_redone_and_the_old_row_kept_apart(smoke, tmp_path,
                                                                       monkeypatch):  # fmt: skip
    out = _copy(smoke, tmp_path)
    snap = out / "runs" / "dit-flow-vanilla" / "snapshots" / "step_000002.pt"  # a curve point
    state = torch.load(snap, weights_only=False)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name] + 1e-3  # weights this folder never scored
    torch.save(state, snap)
    calls = []

    def fake(run, n, options, names, checkpoint, changes, real, progress=False):
        calls.append((run.name, str(checkpoint)))
        return {"KVD-md": 123.0, "KVD-md-lo": 122.0, "KVD-md-hi": 124.0, "PA-md-digit": 0.0}

    monkeypatch.setattr(evaluate, "score_checkpoint", fake)
    monkeypatch.setenv("TPDIFF_CACHE", str(smoke[0] / "cache"))
    paper.paper(out, "smoke", workers=1)
    assert calls == [("dit-flow-vanilla", "snapshots/step_000002.pt")]
    evals = pd.read_csv(out / "evals.csv")
    row = evals[(evals.run == "dit-flow-vanilla") & (evals.step == 2)]
    assert len(row) == 1 and row["KVD-md"].iloc[0] == 123.0
    stale = pd.read_csv(out / "evals-superseded.csv")
    assert list(stale.run) == ["dit-flow-vanilla"] and list(stale.step) == [2]

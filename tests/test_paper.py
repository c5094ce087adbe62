import json

import pandas as pd
import pytest

import harness.paper as paper
from harness.config import METHOD_FIELDS


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TPDIFF_CACHE", str(out / "cache"))
        summary = paper.paper(out, "smoke")
    return out, summary


def test_matched_runs_differ_only_in_method_fields(tmp_path):
    scale = paper.SCALES["cpu"]
    configs = {s.name: paper.run_config(s, scale, tmp_path) for s in paper.run_specs(scale)}
    for backbone, form in paper.PAIRS:
        a = configs[f"{backbone}-{form}-vanilla"].to_dict()
        b = configs[f"{backbone}-{form}-tpdiff"].to_dict()
        assert {k for k in a if a[k] != b[k]} <= set(METHOD_FIELDS)
    noalign = configs["dit-flow-tpdiff-noalign"].to_dict()
    tp = configs["dit-flow-tpdiff"].to_dict()
    assert {k for k in tp if tp[k] != noalign[k]} == {"name", "align"}


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
    runs = [s.name for s in paper.run_specs(paper.SCALES["smoke"])]
    scale = paper.SCALES["smoke"]
    # curves for the matched runs, the last step of the ablation run, renoise-off per pair
    assert len(evals) == 4 * scale.evals + 1 + 2
    assert not evals.duplicated(["run", "step", "renoise"]).any()
    files = ["fig5_quality_vs_flops.png", "fig5_quality_vs_time.png", "fig6_renoise_strip.png",
             "report.md", "cost_stages.csv", "table1_latency.csv"]  # fmt: skip
    for name in files:
        assert (out / name).stat().st_size > 0
    assert sorted(p.stem for p in (out / "grids").glob("*.png")) == sorted(runs)


def test_rerun_resumes_without_recomputing(smoke, monkeypatch):
    out, summary = smoke
    before = (out / "evals.csv").read_text()

    def fail(*args, **kwargs):
        raise AssertionError("a finished evaluation was recomputed")

    monkeypatch.setattr(paper, "score_checkpoint", fail)
    monkeypatch.setattr(paper, "generate", fail)
    monkeypatch.setattr(paper, "sample_main", fail)
    monkeypatch.setattr(paper, "cost_tables", fail)
    monkeypatch.setenv("TPDIFF_CACHE", str(out / "cache"))
    again = paper.paper(out, "smoke")
    assert (out / "evals.csv").read_text() == before
    assert again["backbones"] == summary["backbones"]

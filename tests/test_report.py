import json

import pandas as pd
import pytest
import torch

from harness.common.io import write_csv
from harness.studies.report import build, main

VANILLA_KVD = [8, 6, 4, 3, 2, 1.5, 1, 1]


def _row(run, variant, role, step, n, flops, renoise=True, seed=0, **scores):
    return dict(run=run, backbone="dit", form="flow", variant=variant, role=role, seed=seed,
                step=step, renoise=renoise, n=n, train_flops=flops, train_wall_s=36.0 * step,
                **scores)  # fmt: skip


def _est(name, value, width):
    return {name: value, f"{name}-lo": value - width, f"{name}-hi": value + width}


def _fake_suite(out, tp_kvd=None, finals=None, noise_fvd=2000.0):
    """A results folder written the way the paper suite writes it (evals.csv carries each
    run's training FLOPs and compute time at the step; no run folders), known numbers:
    vanilla costs 2 per step, TPDiff 1; both curves fall the same way per step."""
    tp_kvd = VANILLA_KVD if tp_kvd is None else tp_kvd
    finals = dict(vanilla=100.0, tpdiff=95.0, noalign=150.0) | (finals or {})
    rows = []
    for run, variant, per_step, kvd in (("dit-flow-vanilla", "vanilla", 2.0, VANILLA_KVD),
                                        ("dit-flow-tpdiff", "tpdiff", 1.0, tp_kvd)):  # fmt: skip
        for step, q in enumerate(kvd, start=1):
            rows.append(_row(run, variant, "curve", step, 8, per_step * step,
                             **_est("KVD-md", q, 0.1), **{"PA-md-digit": 0.5}))  # fmt: skip
    for run, variant, per_step, key in (("dit-flow-vanilla", "vanilla", 2.0, "vanilla"),
                                        ("dit-flow-tpdiff", "tpdiff", 1.0, "tpdiff"),
                                        ("dit-flow-tpdiff-noalign", "tpdiff-noalign", 1.0,
                                         "noalign")):  # fmt: skip
        fvd = _est("FVD-md", finals[key], 10)
        rows.append(_row(run, variant, "final", 8, 16, per_step * 8, **fvd,
                         **_est("motion-gap", 0.1, 0.05), **{"PA-md-digit": 0.8, "PA-md": 0.5},
                         flicker=0.2, **{"flicker-real": 0.1}))  # fmt: skip
    rows.append(_row("dit-flow-tpdiff", "tpdiff", "final", 8, 16, 8.0, renoise=False,
                     **_est("FVD-md", 97.0, 10), **_est("motion-gap", 0.6, 0.1),
                     **{"PA-md-digit": 0.8, "PA-md": 0.5}, flicker=0.05,
                     **{"flicker-real": 0.1}))  # fmt: skip
    write_csv(out / "evals.csv", pd.DataFrame(rows))
    refs = [dict(kind=k, n=n, **_est("FVD-md", f, 5), **_est("KVD-md", kv, 0.01),
                 **{"PA-md-digit": pa})
            for n in (8, 16)
            for k, f, kv, pa in (("real", 30.0, 0.0, 0.85), ("noise", noise_fvd, 50.0, 0.1),
                                 ("chance", 30.0, 0.0, 0.1))]  # fmt: skip
    write_csv(out / "references.csv", pd.DataFrame(refs))
    (out / "job.json").write_text(json.dumps(dict(suite="paper", scale="cpu", code="abc",
                                                  curve_n=8, final_n=16)))  # fmt: skip
    plans = dict(backbone="dit", form="flow", vanilla_sampling_s=2.0, tpdiff_sampling_s=1.0,
                 inference_speedup=2.0, flop_ratio_bound=2.2, measured_over_bound=2 / 2.2,
                 training_step_cost_ratio=0.5, training_step_flop_ratio=0.49)  # fmt: skip
    write_csv(out / "cost_plans.csv", pd.DataFrame([plans]))
    write_csv(out / "cost_stages.csv", pd.DataFrame([dict(backbone="dit", stage="0", macs=1)]))
    strip = {"renoise": torch.zeros(1, 1, 4, 8, 8), "no_renoise": torch.ones(1, 1, 4, 8, 8),
             "captions": ["a 3 moving up"]}  # fmt: skip
    torch.save(strip, out / "renoise_strip.pt")


def _verdicts(summary):
    return {(v["claim"], v["backbone"]): v for v in summary["verdicts"]}


def test_build_draws_every_table_plot_and_verdict_from_files(tmp_path):
    _fake_suite(tmp_path)
    summary = build(tmp_path)
    dit = summary["backbones"]["dit"]
    # vanilla's target: median of its last 3 KVD points = 1, reached at step 7 (cost 14);
    # TPDiff's curve falls the same way per step at half the cost: 7 -> ratio 0.5
    assert dit["training_cost_ratio"] == pytest.approx(0.5)
    assert dit["inference_speedup"] == 2.0 and dit["flop_ratio_bound"] == 2.2
    assert dit["tpdiff-noalign_final_FVD-md"] == 150
    assert dit["vanilla_final_PA-md-digit"] == 0.8 and dit["tpdiff_final_PA-md-digit"] == 0.8
    assert dit["no_renoise_final_motion-gap"] == 0.6
    assert summary["real_FVD-md"] == 30 and summary["noise_FVD-md"] == 2000
    assert summary["curve_metric"] == "KVD-md" and summary["n"] == 16
    found = _verdicts(summary)
    assert set(found) == {(c, "dit") for c in ("inference", "training", "alignment", "renoise")}
    assert all(v["verdict"] == "reproduced" for v in found.values()), found
    for name in ("fig5_quality_vs_flops.png", "fig5_quality_vs_time.png",
                 "fig6_renoise_strip.png", "table1_latency.csv", "table3_alignment.csv",
                 "fig6_renoise.csv", "training_cost.csv", "verdicts.csv", "summary.json",
                 "report.md"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    align = pd.read_csv(tmp_path / "table3_alignment.csv").set_index("alignment")
    assert align.loc["on", "FVD-md"] == 95 and align.loc["off", "FVD-md"] == 150
    report = (tmp_path / "report.md").read_text()
    assert report.index("## Verdicts") < report.index("## Table 1")
    assert "fig5_quality_vs_flops.png" in report and "1.71" in report
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_not_reached_is_said_plainly(tmp_path):
    _fake_suite(tmp_path, tp_kvd=[8, 7, 6, 5, 4.5, 4, 3.8, 3.7])
    summary = build(tmp_path)
    assert summary["backbones"]["dit"]["training_cost_ratio"] == "not reached"
    training = _verdicts(summary)[("training", "dit")]
    assert training["verdict"] == "not reproduced" and "not reached" in training["rule"]


def test_a_run_at_noise_level_is_never_reproduced(tmp_path):
    _fake_suite(tmp_path, finals=dict(vanilla=900.0, tpdiff=880.0, noalign=950.0))
    found = _verdicts(build(tmp_path))
    assert not [v for v in found.values() if v["verdict"] == "reproduced"]
    assert all("noise level" in v["rule"] for v in found.values())


def test_report_cli_names_what_is_missing(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path)])
    assert "lacks ['evals.csv', 'cost_plans.csv']" in capsys.readouterr().err


def test_old_evals_without_costs_are_refused_by_name(tmp_path):
    write_csv(tmp_path / "evals.csv", pd.DataFrame([dict(run="x", step=1, renoise=True)]))
    with pytest.raises(ValueError, match=r"lacks the columns \['backbone'.*older harness"):
        build(tmp_path)


def test_report_sets_figures_beside_the_committed_reference(tmp_path):
    ref = tmp_path / "ref"
    _fake_suite(ref)
    (ref / "job.json").write_text(json.dumps(dict(suite="paper", scale="cpu", code="abc")))
    build(ref)
    mine = tmp_path / "mine"
    _fake_suite(mine, finals=dict(tpdiff=35.0))
    (mine / "job.json").write_text(json.dumps(dict(suite="paper", scale="cpu", code="def")))
    build(mine, reference=ref)
    report = (mine / "report.md").read_text()
    section = report.split("## Beside the committed reference")[1].split("## Summary")[0]
    assert "code `def`" in section and "code `abc`" in section
    row = next(line for line in section.splitlines() if "| tpdiff_final_FVD-md " in line)
    assert "35" in row and "95" in row  # this run's figure, then the committed one
    assert "Not comparable" not in section
    (ref / "job.json").write_text(json.dumps(dict(suite="smoke", scale="smoke", code="abc")))
    build(ref)
    build(mine, reference=ref)
    assert "Not comparable" in (mine / "report.md").read_text()


def test_quality_bar_says_who_learns_and_how_far_the_others_miss():
    from harness.studies.report import quality_bar

    summary = {
        "real_FVD-md": 1000.0,
        "backbones": {
            "dit": {"vanilla_final_FVD-md": 2500.0, "vanilla_final_PA-md-digit": 0.8,
                    "tpdiff_final_FVD-md": 5000.0, "tpdiff_final_PA-md-digit": 0.3},
        },
    }  # fmt: skip
    bar = quality_bar(summary).set_index("variant")
    assert bar.loc["vanilla", "meets_bar"] and bar.loc["vanilla", "fvd_over_real"] == 2.5
    assert not bar.loc["tpdiff", "meets_bar"]
    assert bar.loc["tpdiff", "misses"] == "FVD-md 5.00 x real > 4; PA-md-digit 0.300 < 0.4"

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import harness.studies.paper.report as report
from harness.common.io import write_csv
from harness.studies.paper.report import build
from harness.studies.suites.report import main

ROOT = Path(__file__).resolve().parent.parent

VANILLA_KVD = [8, 6, 4, 3, 2, 1.5, 1, 1]


def _row(run, variant, role, step, n, flops, renoise=True, seed=0, **scores):
    return dict(run=run, backbone="dit", form="flow", variant=variant, role=role, seed=seed,
                step=step, renoise=renoise, n=n, train_flops=flops, train_wall_s=36.0 * step,
                **scores)  # fmt: skip


def _est(name, value, width):
    return {name: value, f"{name}-lo": value - width, f"{name}-hi": value + width}


SEEDS = (0, 1, 2)
SEED_SHIFT = (0.0, 5.0, -5.0)  # each seed's final FVD-md moves by this (seed noise)


def _fake_suite(out, tp_kvd=None, finals=None, noise_fvd=2000.0, seeds=SEEDS):
    """A results folder written the way the paper suite writes it (evals.csv carries each
    run's training FLOPs and compute time at the step; no run folders), known numbers, at
    paired seeds: vanilla costs 2 per step, TPDiff 1; both curves fall the same way per
    step (each seed's shifted alike); the alignment ablation at the first seed."""
    tp_kvd = VANILLA_KVD if tp_kvd is None else tp_kvd
    finals = dict(vanilla=100.0, tpdiff=95.0, noalign=150.0) | (finals or {})
    rows = []
    for seed in seeds:
        shift = SEED_SHIFT[seed % 3]
        tag = f"-seed{seed}" if seed else ""
        pairs = (("dit-flow-vanilla", "vanilla", 2.0, VANILLA_KVD),
                 ("dit-flow-tpdiff", "tpdiff", 1.0, tp_kvd))  # fmt: skip
        for run, variant, per_step, kvd in pairs:
            for step, q in enumerate(kvd, start=1):
                rows.append(_row(run + tag, variant, "curve", step, 8, per_step * step, seed=seed,
                                 **_est("KVD-md", q + shift / 100, 0.1),
                                 **{"PA-md-digit": 0.5}))  # fmt: skip
        runs = [("dit-flow-vanilla", "vanilla", 2.0, "vanilla"),
                ("dit-flow-tpdiff", "tpdiff", 1.0, "tpdiff")]  # fmt: skip
        if seed == seeds[0]:
            runs.append(("dit-flow-tpdiff-noalign", "tpdiff-noalign", 1.0, "noalign"))
        last = dict(vanilla=VANILLA_KVD[-1], tpdiff=tp_kvd[-1], noalign=tp_kvd[-1])
        for run, variant, per_step, key in runs:
            fvd = _est("FVD-md", finals[key] + shift, 10)
            fvd |= _est("KVD-md", last[key] + shift / 100, 0.05)  # the curve's last point
            rows.append(_row(run + tag, variant, "final", 9, 16, per_step * 9, seed=seed, **fvd,
                             **_est("motion-gap", 0.1 + shift / 500, 0.05),
                             **{"PA-md-digit": 0.8, "PA-md": 0.5}, flicker=0.2,
                             **{"flicker-real": 0.1}))  # fmt: skip
        rows.append(_row("dit-flow-tpdiff" + tag, "tpdiff", "final", 9, 16, 9.0, renoise=False,
                         seed=seed, **_est("FVD-md", 97.0 + shift, 10),
                         **_est("KVD-md", tp_kvd[-1] + shift / 100, 0.05),
                         **_est("motion-gap", 0.6 + shift / 100, 0.1),
                         **{"PA-md-digit": 0.8, "PA-md": 0.5}, flicker=0.05,
                         **{"flicker-real": 0.1}))  # fmt: skip
    sweep = [dict(backbone="dit", form="flow", batch=b, flop_ratio_bound=2.2, vanilla_s=v,
                  vanilla_s_min=v * 0.98, vanilla_s_max=v * 1.02, tpdiff_s=v / sp,
                  tpdiff_s_min=v / sp * 0.98, tpdiff_s_max=v / sp * 1.02, threads=1)
             for b, v, sp in ((1, 1.0, 1.2), (2, 1.0, 1.9), (4, 1.92, 2.0))]  # fmt: skip
    write_csv(out / "inference_batches.csv", pd.DataFrame(sweep))
    write_csv(out / "evals.csv", pd.DataFrame(rows))
    refs = [dict(kind=k, n=n, **_est("FVD-md", f, 5), **_est("KVD-md", kv, 0.01),
                 **{"PA-md-digit": pa})
            for n in (8, 16)
            for k, f, kv, pa in (("real", 30.0, 0.0, 0.85), ("noise", noise_fvd, 50.0, 0.1),
                                 ("chance", 30.0, 0.0, 0.1))]  # fmt: skip
    write_csv(out / "references.csv", pd.DataFrame(refs))
    job = dict(suite="paper", scale="cpu", code="abc", curve_n=8, final_n=16, seeds=list(seeds))
    (out / "job.json").write_text(json.dumps(job))
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
    # the target: the worst vanilla seed's end level (median of its last 3 points: 1 + 0.05,
    # its final included), reached at the same step by each seed's TPDiff at half the cost
    assert dit["training_cost_ratio"] == pytest.approx(0.5)
    assert dit["training_cost_ratio_lo"] == pytest.approx(0.5)  # every seed says 0.5
    assert dit["inference_batch"] == 4 and dit["inference_speedup"] == pytest.approx(2.0)
    assert dit["inference_batch1_speedup"] == pytest.approx(1.2) and dit["seeds"] == 3
    assert dit["flop_ratio_bound"] == 2.2 and dit["batch1_inference_speedup"] == 2.0
    assert dit["tpdiff-noalign_final_FVD-md"] == 150
    assert dit["vanilla_final_PA-md-digit"] == 0.8 and dit["tpdiff_final_PA-md-digit"] == 0.8
    assert dit["no_renoise_final_motion-gap"] == 0.6  # the median over seeds
    assert dit["final_FVD-md_gap"] == pytest.approx(5.0)  # vanilla - TPDiff, every seed
    assert summary["per_seed"]["dit"]["vanilla_FVD-md"] == {"0": 100.0, "1": 105.0, "2": 95.0}
    assert summary["real_FVD-md"] == 30 and summary["noise_FVD-md"] == 2000
    assert summary["curve_metric"] == "KVD-md" and summary["n"] == 16
    assert summary["seeds"] == [0, 1, 2]
    found = _verdicts(summary)
    assert set(found) == {(c, "dit") for c in ("inference", "training", "alignment", "renoise")}
    assert all(v["verdict"] == "reproduced" for v in found.values()), found
    # the alignment ablation has one seed: provisional; the others rest on three
    assert [c for (c, _), v in found.items() if v["provisional"]] == ["alignment"]
    assert found[("training", "dit")]["seeds"] == [0, 1, 2]
    for name in ("fig5_quality_vs_flops.png", "fig5_quality_vs_time.png",
                 "fig6_renoise_strip.png", "table1_latency.csv", "table3_alignment.csv",
                 "fig6_renoise.csv", "training_cost.csv", "verdicts.csv", "summary.json",
                 "report.md"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    align = pd.read_csv(tmp_path / "table3_alignment.csv").set_index("alignment")
    assert align.loc["on", "FVD-md"] == 95 and align.loc["off", "FVD-md"] == 150
    table = pd.read_csv(tmp_path / "verdicts.csv")
    assert (table.lo <= table.estimate).all() and (table.estimate <= table.hi).all()
    report = (tmp_path / "report.md").read_text()
    assert report.index("## Verdicts") < report.index("## Table 1")
    assert "fig5_quality_vs_flops.png" in report and "1.71" in report
    assert "reproduced (provisional)" in report and "compute-bound" in report
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_not_reached_is_said_plainly(tmp_path):
    _fake_suite(tmp_path, tp_kvd=[8, 7, 6, 5, 4.5, 4, 3.8, 3.7])
    summary = build(tmp_path)
    assert summary["backbones"]["dit"]["training_cost_ratio"] == "not reached"
    training = _verdicts(summary)[("training", "dit")]
    # TPDiff's whole budget is half vanilla's: a miss cannot exclude a ratio of 0.65
    assert training["verdict"] != "reproduced" and "not reached" in training["rule"]


def test_a_run_at_noise_level_is_never_reproduced(tmp_path):
    _fake_suite(tmp_path, finals=dict(vanilla=900.0, tpdiff=880.0, noalign=950.0))
    found = _verdicts(build(tmp_path))
    assert not [v for v in found.values() if v["verdict"] == "reproduced"]
    assert all("noise level" in v["rule"] for v in found.values())


def test_one_seed_labels_every_quality_verdict_provisional(tmp_path):
    _fake_suite(tmp_path, seeds=(0,))
    found = _verdicts(build(tmp_path))
    assert all(v["provisional"] for c, v in found.items() if c[0] != "inference")
    assert not found[("inference", "dit")]["provisional"]


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
    from harness.studies.paper.report import quality_bar

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


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


def report_cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m harness.report FOLDER ARGS` as a user runs it."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "harness.report", str(folder), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True)  # fmt: skip


def cut(path: Path, nbytes: int = 20) -> None:
    """A write cut short: the last `nbytes` bytes of `path` lost, mid-line."""
    path.write_bytes(path.read_bytes()[:-nbytes])


def assert_torn_file_refused(tmp_path: Path, committed: str, torn: str) -> None:
    """`python -m harness.report` on a copy of results/<committed> with `torn` cut mid-line:
    exit 2, one line naming the file, every file byte-identical, no staging folder left."""
    folder = tmp_path / committed
    shutil.copytree(ROOT / "results" / committed, folder)
    cut(folder / torn)
    before = folder_bytes(folder)
    done = report_cli(folder)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and torn in lines[0] and "newline" in lines[0], lines
    assert folder_bytes(folder) == before
    assert [p.name for p in tmp_path.iterdir()] == [committed]


def test_a_torn_evals_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    assert_torn_file_refused(tmp_path, "paper", "evals.csv")


def test_a_valid_folder_redraws_byte_for_byte(tmp_path):
    folder = tmp_path / "paper"
    shutil.copytree(ROOT / "results" / "paper", folder)
    replica = ROOT / "results" / "paper-replica"  # results/paper is drawn beside its replica
    beside = replica if (replica / "summary.json").is_file() else folder  # (or on its own)
    done = report_cli(folder, "--reference", str(beside))
    assert done.returncode == 0, done.stderr
    assert folder_bytes(folder) == folder_bytes(ROOT / "results" / "paper")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".paper.lock", "paper"]  # no staging


def test_references_without_an_n_of_the_evals_are_refused(tmp_path, capsys):
    folder = tmp_path / "paper"
    shutil.copytree(ROOT / "results" / "paper", folder)
    refs = pd.read_csv(folder / "references.csv")
    curve_n = int(refs["n"].min())  # the curve points' n, below the finals'
    write_csv(folder / "references.csv", refs[refs["n"] != curve_n])
    before = folder_bytes(folder)
    with pytest.raises(SystemExit) as stop:
        main([str(folder), "--reference", str(folder)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "references.csv has no" in err[0] and f"n = {curve_n}" in err[0], err
    assert folder_bytes(folder) == before


def test_a_failure_while_drawing_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    folder = tmp_path / "paper"
    shutil.copytree(ROOT / "results" / "paper", folder)
    before = folder_bytes(folder)
    drawn = []

    def second_plot_fails(*args, **kwargs):  # the first plot and several tables are written
        if drawn:
            raise RuntimeError("the disk filled up")
        drawn.append(args)
        real_plot(*args, **kwargs)

    real_plot = report.plot_quality
    monkeypatch.setattr(report, "plot_quality", second_plot_fails)
    (folder / "curves.csv").unlink()  # an output missing before: must stay missing
    del before["curves.csv"]
    with pytest.raises(RuntimeError, match="disk filled up"):
        build(folder)
    assert drawn and folder_bytes(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".paper.lock", "paper"]


def _rewrite(path: Path, edit) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


def _set_cell(path: Path, column: str, value: str) -> None:
    def edit(lines):
        i = lines[0].split(",").index(column)
        cells = lines[-1].split(",")
        cells[i] = value
        return lines[:-1] + [",".join(cells)]

    _rewrite(path, edit)


CORRUPT = {
    "short row": ("evals.csv", lambda p: _rewrite(p, lambda ls: ls[:-1] + [ls[-1][:-8]]),
                  r"evals.csv line 59 has \d+ fields where the header has \d+"),
    "long row": ("evals.csv", lambda p: _rewrite(p, lambda ls: ls[:-1] + [ls[-1] + ",1"]),
                 r"evals.csv line 59 has \d+ fields"),
    "not a number": ("evals.csv", lambda p: _set_cell(p, "FVD-md", "9x7"),
                     r"evals.csv line 59: column 'FVD-md' holds '9x7', not a number"),
    "empty identity": ("evals.csv", lambda p: _set_cell(p, "backbone", ""),
                       r"column 'backbone' holds nothing, where an identity belongs"),
    "not a flag": ("evals.csv", lambda p: _set_cell(p, "renoise", "Tru"),
                   r"column 'renoise' holds 'Tru', not True or False"),
    "duplicate": ("evals.csv", lambda p: _rewrite(p, lambda ls: ls + [ls[-1]]),
                  r"evals.csv holds 2 rows for the same run, role, step, renoise"),
    "unknown role": ("evals.csv", lambda p: _set_cell(p, "role", "draft"),
                     r"roles \['draft'\], neither curve nor final"),
    "torn plans": ("cost_plans.csv", cut, r"cost_plans.csv does not end in a newline"),
    "torn stages": ("cost_stages.csv", cut, r"cost_stages.csv does not end in a newline"),
    "duplicate reference": ("references.csv", lambda p: _rewrite(p, lambda ls: ls + [ls[-1]]),
                            r"references.csv holds 2 rows for the same kind, n"),
    "torn job": ("job.json", lambda p: cut(p, 5), r"job.json does not parse as JSON"),
    "torn strip": ("renoise_strip.pt", lambda p: cut(p, 200), r"renoise_strip.pt is not a"),
}  # fmt: skip


@pytest.mark.parametrize("case", CORRUPT)
def test_a_torn_or_inconsistent_input_is_named_before_anything_is_written(tmp_path, case):
    _fake_suite(tmp_path)
    build(tmp_path)  # the outputs of a good draw, which must survive
    name, corrupt, message = CORRUPT[case]
    corrupt(tmp_path / name)
    before = folder_bytes(tmp_path)
    with pytest.raises(ValueError, match=message):
        build(tmp_path)
    assert folder_bytes(tmp_path) == before


def test_a_torn_reference_summary_is_named(tmp_path):
    ref, mine = tmp_path / "ref", tmp_path / "mine"
    for folder in (ref, mine):
        folder.mkdir()
        _fake_suite(folder)
    build(ref)
    cut(ref / "summary.json", 30)
    with pytest.raises(ValueError, match=r"ref/summary.json does not parse as JSON"):
        build(mine, reference=ref)
    assert not (mine / "report.md").exists()


def test_a_replica_is_compared_claim_by_claim(tmp_path):
    main_run, replica = tmp_path / "main", tmp_path / "replica"
    _fake_suite(main_run)
    build(main_run)
    _fake_suite(replica, finals=dict(noalign=96.0))  # alignment no longer clears 0
    build(replica, reference=main_run)
    section = (replica / "report.md").read_text().split("## Beside the committed reference")[1]
    lines = [line for line in section.splitlines() if line.startswith("| ") and "dit" in line]
    rows = {" ".join(cell.strip() for cell in line.split("|")[1:3]): line for line in lines}
    assert "True" in rows["training dit"] and "reproduced" in rows["training dit"]
    align = rows["alignment dit"]
    assert "inconclusive" in align and "reproduced" in align and "False" in align
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in section.splitlines()
             if line.startswith("| ") and line.count("|") == 10]  # fmt: skip
    agree = sum(c[4] == "True" for c in cells[1:])  # the replica table's agree column
    assert cells[0][4] == "agree" and len(cells) > 2
    found = next(line for line in section.splitlines() if "The verdicts agree" in line)
    assert f"agree on {agree} of " in found  # the paragraph counts the table's rows
    assert "alignment (dit): inconclusive here, reproduced there" in found
    # an infinite upper end stored as null in JSON reads back as +inf
    assert report._bounds({"estimate": 0.5, "lo": 0.1, "hi": None}) == (0.5, 0.1, float("inf"))

"""Named ablations and the shared train-and-score unit (`harness.studies.core.train_and_score`)."""

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_report import ROOT, assert_torn_file_refused, cut, folder_bytes

import harness.pipeline.evaluate as evaluate
import harness.pipeline.train as train
import harness.studies.ablations.report as ablation_report
import harness.studies.ablations.run as ablate
import harness.studies.core.train_and_score as trials
import harness.studies.suites.report as report
from ablations import ABLATIONS, PAPER
from harness.metrics.evaluator import load_evaluator
from harness.pipeline.build import plan_for
from harness.studies.core.protocol import METRICS
from harness.studies.core.scale import SCALES


@pytest.mark.parametrize("scale", ["tiny", "cpu", "gpu"])
def test_every_variant_is_a_valid_config_difference(tmp_path, scale):
    for name, ablation in ABLATIONS.items():
        assert PAPER in ablation.variants, name
        base = trials.trial_config(SCALES[scale], tmp_path).to_dict()
        for label, changes in ablation.variants.items():
            cfg = trials.trial_config(SCALES[scale], tmp_path, **changes)
            if cfg.frames % 2 ** (cfg.num_stages - 1):  # K = 5 on 8 frames: skipped, named
                with pytest.raises(ValueError, match="not divisible by 2"):
                    plan_for(cfg)
                continue
            plan = plan_for(cfg)  # raises on an invalid plan
            assert plan.num_frames == cfg.frames
            differs = {k for k, v in cfg.to_dict().items() if base[k] != v} - {"name"}
            assert differs == set(changes), (name, label)


def test_sampling_only_variants_share_one_training_run(tmp_path):
    scale = SCALES["tiny"]
    base = trials.trial_config(scale, tmp_path)
    norenoise = trials.trial_config(scale, tmp_path, renoise=False)
    front = trials.trial_config(scale, tmp_path, stage_steps=(3, 2, 1))
    noalign = trials.trial_config(scale, tmp_path, align=False)
    assert base.name == norenoise.name == front.name != noalign.name
    train, changes = trials.split_sampling(front)
    assert train.stage_steps == () and changes == {"stage_steps": (3, 2, 1)}
    # with steps-weighted stage sampling the step split changes training, so it is kept
    weighted = trials.trial_config(scale, tmp_path, stage_weighting="steps", stage_steps=(3, 2, 1))
    other = trials.trial_config(scale, tmp_path, stage_weighting="steps")
    assert weighted.name != other.name
    assert trials.split_sampling(weighted)[0].stage_steps == (3, 2, 1)


@pytest.mark.slow
def test_renoise_ablation_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("TPDIFF_CACHE", str(tmp_path / "cache"))
    load_evaluator(SCALES["tiny"].evaluator, tmp_path / "cache", progress=False)
    table = ablate.ablate("renoise", "tiny", tmp_path)
    assert list(table["variant"]) == [PAPER, "off", "pyramid-flow"]
    assert table["stutter"].notna().all() and table["motion-gap"].notna().all()
    curves = pd.read_csv(tmp_path / "renoise" / "curves.csv")
    assert len(curves) == 6 and list(curves["step"]) == [2, 4] * 3
    assert table["run"].nunique() == 1  # one training run serves both
    run = tmp_path / "runs" / table["run"][0]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # trained once, in two resumed chunks
    evals = pd.read_csv(run / "evals.csv")
    assert len(evals) == 6 and evals["sampling"].str.endswith("norenoise-seed0").sum() == 2
    assert evals["sampling"].str.endswith("pfrenoise-seed0").sum() == 2
    assert table["train_gflops"].nunique() == 1
    assert (table[ablate.COLUMNS].notna()).all().all()

    # finish (references, speed, strips) and the report, then a redraw from the files alone
    summary = ablate.run_all(tmp_path, [], "tiny", train=False)
    assert list(summary["ablations"]) == list(ABLATIONS)  # every registered ablation
    rows = {r["variant"]: r for r in summary["ablations"]["renoise"]["variants"]}
    assert {rows[v]["verdict"] for v in ("off", "pyramid-flow")} <= {
        "better",
        "worse",
        "within noise",
    }
    assert rows[PAPER]["verdict"] == "reference"
    for row in rows.values():
        assert row["FVD-md-lo"] <= row["FVD-md"] <= row["FVD-md-hi"]
        assert row["flop_ratio_bound"] > 1 and row["inference_speedup"] > 0
    stages = {r["variant"]: r for r in summary["ablations"]["stages"]["variants"]}
    assert stages["K=5"]["status"] == "skipped" and "divisible" in stages["K=5"]["reason"]
    assert stages["K=2"]["status"] == "not run"
    assert summary["seed_spread"]["FVD-md"] is None  # the seed ablation did not run
    for name in (
        "renoise/renoise.png",
        "renoise/renoise_samples.png",
        "report.md",
        "summary.csv",
        "summary.json",
        "speed.csv",
        "strips.pt",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "Not run in this folder" in (tmp_path / "report.md").read_text()
    drawn = (tmp_path / "summary.json").read_text()
    shutil.rmtree(tmp_path / "runs")
    (tmp_path / "summary.json").unlink()
    assert report.main([str(tmp_path)]) == 0
    assert (tmp_path / "summary.json").read_text() == drawn


def test_nan_loss_fails_with_the_step(tmp_path, monkeypatch):
    scale = SCALES["tiny"]
    cfg = trials.trial_config(scale, tmp_path)
    real = train.draw_training_batch

    def poisoned(*args, **kwargs):
        batch = real(*args, **kwargs)
        return dataclasses.replace(batch, x_u=batch.x_u * float("nan"))

    monkeypatch.setattr(train, "draw_training_batch", poisoned)
    with pytest.raises(FloatingPointError, match="non-finite loss nan at step 1"):
        trials.train_and_score([trials.trial_arm(cfg, scale.trial, METRICS)], None)


def test_unknown_ablation_is_named():
    with pytest.raises(ValueError, match="unknown ablation 'nope'"):
        ablate.ablate("nope", "tiny", None)


def test_reuse_recomputes_no_finished_score(tmp_path, monkeypatch):
    monkeypatch.setenv("TPDIFF_CACHE", str(tmp_path / "cache"))
    table = ablate.ablate("upsample", "tiny", tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("a finished score was recomputed")

    monkeypatch.setattr(evaluate, "score_checkpoint", fail)
    again = ablate.ablate("upsample", "tiny", tmp_path)
    pd.testing.assert_frame_equal(again, table)


def test_seed_spread_and_cost_to_target_known_answers():
    table = pd.DataFrame([
        dict(ablation="seed", variant=PAPER, **{"FVD-md": 10.0, "motion-gap": 0.5,
                                                "PA-md-digit": 0.75}),
        dict(ablation="seed", variant="seed 1", **{"FVD-md": 12.5, "motion-gap": 0.25,
                                                   "PA-md-digit": float("nan")}),
    ])  # fmt: skip
    assert ablation_report.seed_spreads(table) == {
        "FVD-md": 2.5,
        "motion-gap": 0.25,
        "PA-md-digit": None,
    }  # NaN: unknown
    curve = pd.DataFrame({"train_flops": [3.0, 1.0, 2.0], "FVD-md": [4.0, 10.0, 6.0]})
    assert ablation_report.cost_to_target(curve, 8.0) == pytest.approx(1.5)  # between 1 and 2
    assert ablation_report.cost_to_target(curve, 3.0) is None  # never reached


def test_gpu_commands_name_every_variant_with_its_cost_or_why_not():
    """`ablate --commands CONFIG`: sampling-only variants sample the config's own run, the
    others train their own; costs fall with K; what the config cannot take says why."""
    from harness.studies.ablations.commands import commands_table

    rows = {
        (r["ablation"], r["variant"]): r
        for r in commands_table(Path("baselines/gpu/animatediff-tpdiff.toml"), list(ABLATIONS))
    }
    assert "torchrun" not in rows["renoise", "pyramid-flow"]["commands"]
    assert "renoise=pyramid-flow" in rows["renoise", "pyramid-flow"]["commands"]
    assert "torchrun" in rows["stages", "K=5"]["commands"]
    assert "num_stages=5" in rows["stages", "K=5"]["commands"]
    cost = [
        float(rows["stages", k]["train_tflops_per_sample_step"].lstrip("~"))
        for k in ("K=1", "K=2", PAPER, "K=4", "K=5")
    ]
    assert cost == sorted(cost, reverse=True)
    assert rows["stages", "K=5"]["sample_tflops_per_video"].startswith("~")  # scaled, marked
    assert rows["stages", PAPER]["sample_tflops_per_video"] == "72"  # 10 x (1.03 + 2.05 + 4.11)
    assert rows["form", "ddim"]["commands"].startswith("the config's own setting")
    assert "form=ddim" in rows["form", "ddim-v"]["commands"]  # why not, and the fix
    wan = {
        (r["ablation"], r["variant"]): r
        for r in commands_table(Path("baselines/gpu/wan-tpdiff.toml"), ["stages"])
    }
    assert "frames=61" in wan["stages", "K=4"]["commands"]


def test_registry_marks_rows_scored_with_other_changes_as_stale(tmp_path):
    table = pd.DataFrame([
        dict(ablation="renoise", variant=PAPER, changes="{}"),
        dict(ablation="renoise", variant="off", changes=json.dumps({"renoise": False})),
    ])  # fmt: skip
    found = ablate.registry(SCALES["tiny"], tmp_path, table)
    status = {(a["name"], v["label"]): v["status"] for a in found for v in a["variants"]}
    assert status["renoise", PAPER] == "ran"
    assert status["renoise", "off"] == "stale"  # the registry now says renoise="off"
    assert status["renoise", "pyramid-flow"] == "not run"
    assert status["stages", "K=5"] == "skipped"
    assert [a["name"] for a in found] == list(ABLATIONS)


def test_a_torn_ablations_folder_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    assert_torn_file_refused(tmp_path, "ablations", "renoise/table.csv")


@pytest.mark.parametrize("case", ["final without curve", "torn strips", "bad registry"])
def test_an_inconsistent_ablations_folder_is_named(tmp_path, case):
    folder = tmp_path / "ablations"
    shutil.copytree(ROOT / "results" / "ablations", folder)
    if case == "final without curve":
        curves = pd.read_csv(folder / "seed" / "curves.csv")
        curves[curves["variant"] != "seed 1"].to_csv(folder / "seed" / "curves.csv", index=False)
        message = r"final scores without curves.csv rows for \['seed/seed 1'\]"
    elif case == "torn strips":
        cut(folder / "strips.pt", 1000)
        message = r"strips.pt is not a readable saved results file"
    else:
        (folder / "ablations.json").write_text(json.dumps({"ablations": [{"name": "seed"}]}))
        message = r"ablations.json is not a registry"
    before = folder_bytes(folder)
    with pytest.raises(ValueError, match=message):
        ablation_report.build(folder)
    assert folder_bytes(folder) == before


def test_a_failure_while_drawing_ablations_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    folder = tmp_path / "ablations"
    shutil.copytree(ROOT / "results" / "ablations", folder)
    (folder / "summary.json").unlink()  # an output missing before: must stay missing
    before = folder_bytes(folder)
    drawn = []

    def second_plot_fails(*args, **kwargs):  # one ablation's plots are written first
        if drawn:
            raise RuntimeError("the disk filled up")
        drawn.append(args[0])
        real_plot(*args, **kwargs)

    real_plot = ablation_report.plot_ablation
    monkeypatch.setattr(ablation_report, "plot_ablation", second_plot_fails)
    with pytest.raises(RuntimeError, match="disk filled up"):
        ablation_report.build(folder)
    assert drawn and folder_bytes(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ablations.lock", "ablations"]

"""Named ablations and the shared train-and-score unit (`harness.studies.trials`)."""

import dataclasses
import json

import pandas as pd
import pytest

import harness.pipeline.evaluate as evaluate
import harness.pipeline.train as train
import harness.studies.ablate as ablate
import harness.studies.trials as trials
from ablations import ABLATIONS, PAPER
from harness.metrics.evaluator import load_evaluator
from harness.pipeline.build import plan_for


@pytest.mark.parametrize("scale", ["tiny", "cpu", "gpu"])
def test_every_variant_is_a_valid_config_difference(tmp_path, scale):
    for name, ablation in ABLATIONS.items():
        assert PAPER in ablation.variants, name
        base = trials.trial_config(trials.SCALES[scale], tmp_path).to_dict()
        for label, changes in ablation.variants.items():
            cfg = trials.trial_config(trials.SCALES[scale], tmp_path, **changes)
            plan = plan_for(cfg)  # raises on an invalid plan
            assert plan.num_frames == cfg.frames
            differs = {k for k, v in cfg.to_dict().items() if base[k] != v} - {"name"}
            assert differs == set(changes), (name, label)


def test_sampling_only_variants_share_one_training_run(tmp_path):
    scale = trials.SCALES["tiny"]
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


def test_renoise_ablation_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("TPDIFF_CACHE", str(tmp_path / "cache"))
    load_evaluator(trials.SCALES["tiny"].evaluator, tmp_path / "cache", progress=False)
    table = ablate.ablate("renoise", "tiny", tmp_path)
    assert list(table["variant"]) == [PAPER, "off", "pyramid-flow"]
    assert table["run"].nunique() == 1  # one training run serves both
    run = tmp_path / "runs" / table["run"][0]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # trained once, in two resumed chunks
    evals = pd.read_csv(run / "evals.csv")
    assert len(evals) == 6 and evals["sampling"].str.endswith("norenoise-seed0").sum() == 2
    assert evals["sampling"].str.endswith("pfrenoise-seed0").sum() == 2
    assert table["train_gflops"].nunique() == 1
    assert (table[ablate.COLUMNS].notna()).all().all()
    for name in ("table.csv", "renoise.png", "report.md"):
        assert (tmp_path / "renoise" / name).stat().st_size > 0

    def fail(*args, **kwargs):
        raise AssertionError("a finished score was recomputed")

    monkeypatch.setattr(evaluate, "score_checkpoint", fail)
    again = ablate.ablate("renoise", "tiny", tmp_path)
    pd.testing.assert_frame_equal(again, table)


def test_nan_loss_fails_with_the_step(tmp_path, monkeypatch):
    scale = trials.SCALES["tiny"]
    cfg = trials.trial_config(scale, tmp_path)
    real = train.draw_training_batch

    def poisoned(*args, **kwargs):
        batch = real(*args, **kwargs)
        return dataclasses.replace(batch, x_u=batch.x_u * float("nan"))

    monkeypatch.setattr(train, "draw_training_batch", poisoned)
    with pytest.raises(FloatingPointError, match="non-finite loss nan at step 1"):
        trials.train_and_score(cfg, scale, None)


def test_unknown_ablation_is_named():
    with pytest.raises(ValueError, match="unknown ablation 'nope'"):
        ablate.ablate("nope", "tiny", None)

"""The CPU recipe's pieces: data fields, lr schedule, EMA warmup, DiT and UNet sizes for
16x16 canvases, the tiny autoencoder, classifier-free guidance."""

import dataclasses
import math

import pytest
import torch

import harness.models.autoencoder as ae
import harness.models.codec as codec
from harness.common.config import Config
from harness.models.backbones import build_backbone
from harness.pipeline.build import build_data
from harness.pipeline.train import learning_rate


def two_steps(tmp_path, name: str, **changes) -> Config:
    """A 2-step DiT run on 16x16 frames with one 8-px digit, 4 frames."""
    return Config(
        backbone="dit", resolution=16, digit_size=8, max_digits=1, frames=4, num_videos=8,
        steps=2, batch_size=2, warmup_steps=1, out_dir=str(tmp_path / "runs"), name=name,
        device="cpu", sample_steps=3, **changes,
    )  # fmt: skip


def test_data_fields_reach_moving_digits():
    data = build_data(Config(resolution=16, digit_size=8, max_digits=1, num_videos=8, frames=4))
    assert data.digit_size == 8 and data.max_digits == 1
    assert all(data[i]["labels"]["num_digits"] == 1 for i in range(8))
    with pytest.raises(ValueError, match="max_digits"):
        Config(max_digits=0)


def test_cosine_schedule_warms_up_then_decays_to_zero():
    cfg = Config(lr=1.0, warmup_steps=10, steps=110, lr_schedule="cosine")
    assert learning_rate(cfg, 0) == pytest.approx(0.1)
    assert learning_rate(cfg, 10) == pytest.approx(1.0)
    assert learning_rate(cfg, 60) == pytest.approx(0.5)
    assert learning_rate(cfg, 109) == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert learning_rate(Config(lr=1.0, warmup_steps=10), 50) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        Config(lr_schedule="step")


def test_dit_patch_sizes_take_16x16_frames():
    torch.manual_seed(0)
    model = build_backbone("dit", "small-p4", max_frames=16, sample_size=16)
    assert tuple(model.inner.config.patch_size) == (1, 4, 4)
    x = torch.randn(2, 1, 4, 16, 16)
    assert model(x, torch.rand(2), torch.randn(2, 3, 64)).shape == x.shape


def test_tiny_autoencoder_trains_caches_and_round_trips(tmp_path):
    from harness.models.autoencoder import AutoencoderRecipe, load_autoencoder

    recipe = AutoencoderRecipe(size=16, steps=3, batch_size=2, width=8, latent_channels=4, down=2)
    codec = load_autoencoder(recipe, tmp_path, progress=False)
    assert (tmp_path / "autoencoder" / f"{recipe.key()}.pt").is_file()
    again = load_autoencoder(recipe, tmp_path, progress=False)  # from the cache, same weights
    video = torch.rand(2, 1, 4, 16, 16) * 2 - 1
    z = codec.encode(video)
    assert z.shape == (2, 4, 4, 4, 4) == (2, *codec.latent_shape(4, 16))
    assert torch.equal(z, again.encode(video))
    out = codec.decode(z)
    assert out.shape == video.shape and out.abs().max() <= 1


def test_latent_config_trains_and_samples_decoded_video(tmp_path, monkeypatch):
    from harness.pipeline.sample import generate
    from harness.pipeline.train import main

    monkeypatch.setenv("TPDIFF_CACHE", str(tmp_path / "cache"))
    full = ae.recipe_for  # a 2-step autoencoder: the codec trains it on first use
    small = lambda cfg: dataclasses.replace(full(cfg), steps=2, batch_size=2, width=8)  # noqa: E731
    monkeypatch.setattr(codec, "recipe_for", small)
    run = main(two_steps(tmp_path, "latent", size="small-p1", latent_channels=4))
    gen = generate(run, dict(num_samples=2), progress=False)
    assert gen.videos.shape == (2, 1, 4, 16, 16)


def test_guidance_scale_one_is_the_conditional_model_and_scales_extrapolate():
    from harness.pipeline.sample import guided

    def model(x, u, ids):  # conditional output 2, unconditional 1 (ids all 0)
        return x * 0 + (ids.float().amax(1) > 0).float().view(-1, 1, 1, 1, 1) + 1

    x, u = torch.zeros(2, 1, 2, 4, 4), torch.rand(2)
    ids, null = torch.ones(2, 3, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long)
    assert torch.allclose(guided(model, null, 1.0)(x, u, ids), torch.full_like(x, 2.0))
    assert torch.allclose(guided(model, null, 3.0)(x, u, ids), torch.full_like(x, 4.0))


def test_cond_dropout_trains_and_guided_sampling_runs(tmp_path):
    from harness.pipeline.sample import generate
    from harness.pipeline.train import main

    run = main(two_steps(tmp_path, "cfg", size="tiny", cond_dropout=0.5))
    gen = generate(run, dict(num_samples=2, guidance=2.0), progress=False)
    assert gen.videos.shape == (2, 1, 4, 16, 16) and torch.isfinite(gen.videos).all()


def test_ema_warms_up_to_its_target_and_round_trips_through_a_checkpoint():
    """Training's EMA (diffusers' EMAModel): the first update copies the weights, the n-th
    later one averages with decay min(target, (1 + n) / (10 + n))."""
    from diffusers.training_utils import EMAModel

    from harness.pipeline.train import ema_weights, load_ema

    model = torch.nn.Linear(1, 1, bias=False)
    ema = EMAModel(model.parameters(), decay=0.5, foreach=True)
    expected = None
    for n, value in enumerate([1.0, 3.0, 0.0, 2.0, 2.0]):
        model.weight.data.fill_(value)
        ema.step(model.parameters())
        decay = 0.0 if n == 0 else min(0.5, (1 + n) / (10 + n))
        expected = value if n == 0 else decay * expected + (1 - decay) * value
        assert float(ema.shadow_params[0]) == pytest.approx(expected)
    saved = {"ema": ema_weights(ema, model), "step": 5}
    assert float(saved["ema"]["weight"]) == pytest.approx(expected)
    again = EMAModel(model.parameters(), decay=0.5, foreach=True)
    load_ema(again, model, saved)
    model.weight.data.fill_(4.0)
    ema.step(model.parameters())
    again.step(model.parameters())
    assert torch.equal(ema.shadow_params[0], again.shadow_params[0])  # resumed bit for bit


def test_a_cosine_run_refuses_a_resume_with_other_steps_but_stops_and_resumes_exactly(tmp_path):
    from harness.pipeline.train import main

    common = dict(backbone="dit", size="tiny", resolution=16, digit_size=8, max_digits=1,
                  frames=4, num_videos=8, batch_size=2, warmup_steps=1, lr_schedule="cosine",
                  steps=4, ckpt_every=4, out_dir=str(tmp_path), device="cpu")  # fmt: skip
    straight = main(Config(name="straight", **common))
    chunked = Config(name="chunked", **common)
    main(chunked, stop_at=2)  # the trials' chunks: stop, score, go on
    assert torch.load(chunked.run_dir / "checkpoint.pt", weights_only=False)["step"] == 2
    main(chunked)
    a = torch.load(straight / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(chunked.run_dir / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="steps: 4 -> 8"):  # the schedule depends on steps
        main(chunked.replace(steps=8))


def test_recipe_study_writes_its_table_grid_and_report_and_reuses_scores(tmp_path, monkeypatch):
    import pandas as pd

    import harness.pipeline.evaluate as evaluate
    import harness.studies.recipe.run as recipe
    from harness.metrics import EvaluatorRecipe
    from harness.studies.core import cpu_recipe

    monkeypatch.setenv("TPDIFF_CACHE", str(tmp_path / "cache"))
    tiny = dict(cpu_recipe.DATA, size="tiny", batch_size=2, warmup_steps=1, num_videos=32)
    monkeypatch.setattr(recipe, "CANDIDATES", {"tiny": ("dit", 4, tiny)})
    quick = EvaluatorRecipe(
        frames=8, size=16, max_digits=1, digit_size=8, steps=30, heldout=16, batch_size=8
    )
    monkeypatch.setattr(recipe, "EVALUATOR", quick)
    table = recipe.study(tmp_path / "out", ["tiny"], n=8, evals=2)
    assert list(table.step) == [2, 4] and set(table.candidate) == {"tiny"}
    for col in ("FVD_md", "FVD_md_lo", "FVD_md_hi", "PA_md_digit", "real_FVD_md", "noise_FVD_md"):
        assert table[col].notna().all(), col
    assert (table.real_FVD_md < table.noise_FVD_md).all()
    assert (tmp_path / "out" / "grids" / "tiny.png").stat().st_size > 0
    assert "| tiny " in (tmp_path / "out" / "report.md").read_text()

    def fail(*args, **kwargs):
        raise AssertionError("a stored score was recomputed")

    monkeypatch.setattr(evaluate, "score_checkpoint", fail)
    again = recipe.study(tmp_path / "out", ["tiny"], n=8, evals=2)
    pd.testing.assert_frame_equal(again.drop(columns="study_min"), table.drop(columns="study_min"))


def test_harness_report_redraws_a_recipe_folder_byte_for_byte(tmp_path):
    import shutil

    from test_report import ROOT, folder_bytes, report_cli

    folder = tmp_path / "recipe"
    shutil.copytree(ROOT / "results" / "recipe", folder)
    (folder / "report.md").unlink()  # an output: drawn again from recipe.csv alone
    done = report_cli(folder)  # the study is picked by the recipe.csv the folder holds
    assert done.returncode == 0, done.stderr
    assert "report:" in done.stdout and "candidates" in done.stdout
    assert folder_bytes(folder) == folder_bytes(ROOT / "results" / "recipe")


def test_a_torn_recipe_table_is_refused_in_one_line_and_nothing_is_written(tmp_path):
    from test_report import assert_torn_file_refused

    assert_torn_file_refused(tmp_path, "recipe", "recipe.csv")

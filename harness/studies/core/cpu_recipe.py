"""The CPU reference recipe: the settings under which the CPU-scale models learn
(`results/recipe/report.md`, issue 17). One home for them, shared by the paper suite's and
the sweep's `cpu` scales and by the recipe study's candidates.

A 16x16 canvas with one 8-px digit and 8 frames; diffusion on the tiny autoencoder's 8x8x2
latents; batch 16, lr 2e-3 with a cosine schedule after 50 warm-up steps, EMA 0.999;
10 % empty captions in training and classifier-free guidance 3 at sampling. Scored by an
evaluator trained on the same data (64-d features); every study scores it by the paper
suite's design below (curve points at n = 256, finals at n = 1,024)."""

from __future__ import annotations

DATA = dict(resolution=16, digit_size=8, max_digits=1, frames=8)
LATENT = dict(latent_channels=2, latent_down=1)
OPTIM = dict(batch_size=16, lr=2e-3, lr_schedule="cosine", warmup_steps=50, ema_decay=0.999)
GUIDED = dict(cond_dropout=0.1, guidance=3.0)
OVERRIDES = DATA | LATENT | OPTIM | GUIDED  # on baselines/<backbone>-<method>.toml
SIZES = {"dit": "small-p2", "unet": "lite"}
# training steps per backbone: the DiT reaches PA-md-digit 0.80 at 6,000 steps (0.12 at
# 1,500), the UNet 0.78 at 1,500
STEPS = {"dit": 6000, "unet": 3000}
# the evaluator's settings, EvaluatorRecipe(**EVALUATOR) (plain data: this module imports nothing)
EVALUATOR = dict(frames=8, size=16, max_digits=1, digit_size=8, width=8, embed_dim=32)
# the studies' pre-registered design (docs/paper-suite.md): training seeds per main arm,
# videos per final score (and its references), curve snapshots per run (the last is the
# final score) and videos per curve point
SEEDS = 3
FINAL_N = 1024
CURVE_POINTS = 6
CURVE_N = 256

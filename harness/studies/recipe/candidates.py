"""The recipe study's candidates: each a vanilla baseline with a few levers changed, named
once here for the study (`run`) and its report (which lists those not run yet)."""

from __future__ import annotations

from harness.studies.core import cpu_recipe

# the data every candidate shares, and the recipe's levers (cpu_recipe)
DATA, OPTIM = cpu_recipe.DATA, cpu_recipe.OPTIM
GUIDED, LATENT = cpu_recipe.GUIDED, cpu_recipe.LATENT
# name -> (backbone, steps, overrides on baselines/<backbone>-vanilla.toml)
CANDIDATES: dict[str, tuple[str, int, dict]] = {
    "dit-pixel-p4": ("dit", 1500, DATA | OPTIM | GUIDED | dict(size="small-p4")),
    "dit-latent": ("dit", 1500, DATA | OPTIM | GUIDED | LATENT | dict(size="small-p2")),
    "dit-latent-noguide": ("dit", 1500, DATA | OPTIM | LATENT | dict(size="small-p2")),
    "dit-latent-long": ("dit", 3000, DATA | OPTIM | GUIDED | LATENT | dict(size="small-p2")),
    "dit-latent-6k": ("dit", 6000, DATA | OPTIM | GUIDED | LATENT | dict(size="small-p2")),
    "dit-base-latent-6k": ("dit", 6000, DATA | OPTIM | GUIDED | LATENT | dict(size="base-p2")),
    # the two levers of the recipe, one at a time at the recipe's steps: pixels instead of
    # latents (4x4-pixel patches: the same 16 tokens per frame), and no guidance
    "dit-pixel-p4-6k": ("dit", 6000, DATA | OPTIM | GUIDED | dict(size="small-p4")),
    "dit-latent-noguide-6k": ("dit", 6000, DATA | OPTIM | LATENT | dict(size="small-p2")),
    "unet-pixel": ("unet", 1500, DATA | OPTIM | GUIDED | dict(size="lite")),
    "unet-latent": ("unet", 1500, DATA | OPTIM | GUIDED | LATENT | dict(size="lite")),
    "unet-latent-long": ("unet", 2000, DATA | OPTIM | GUIDED | LATENT | dict(size="lite")),
    "unet-latent-6k": ("unet", 6000, DATA | OPTIM | GUIDED | LATENT | dict(size="lite")),
}

"""The paper's own figures (arXiv 2503.09566, docs/method.md sec. 9), per backbone role,
quoted beside ours by the reports and the GPU check: Table 1's inference speedup at 30
steps (a GPU latency), the training cost ratio (1 / 2.13 and 1 / 2 in GPU hours), and the
MSR-VTT zero-shot FVD and CLIPSIM with and without data-noise alignment."""

from __future__ import annotations

PAPER_FIGURES = [
    dict(backbone="dit", role="MiniFlux-vid (flow DiT)", inference_speedup=1.71,
         training_cost_ratio=round(1 / 2.13, 3), fvd_no_align=602.1, fvd_align=562.6,
         clipsim_no_align=29.34, clipsim_align=29.76),
    dict(backbone="unet", role="AnimateDiff (DDIM UNet)", inference_speedup=1.49,
         training_cost_ratio=0.5, fvd_no_align=834.5, fvd_align=782.6,
         clipsim_no_align=28.21, clipsim_align=28.91),
]  # fmt: skip

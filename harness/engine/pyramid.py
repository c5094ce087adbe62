"""The temporal pyramid: stage plans, temporal resampling, and stage jumps (docs/method.md
sec. 2, 4).

Videos are shaped (B, C, F, H, W); resampling acts along F by a factor 2.
Stage k of K runs at F_k = F / 2^(K-1-k) frames, from u_start (noisier) down
to u_end. The K-1 jump points u_k^end are the only free times: each next
stage's start is derived from the SNR rule

    SNR(u_{k+1}^start) = SNR(u_k^end) / lambda_max(U U^T)

which is the least noisy start at which the jump's corrective noise has a
positive semi-definite covariance.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
from torch import Tensor

from harness.engine.forms import Form, get_form

UPSAMPLE_MODES = ("nearest", "linear")
# corrective noise at a stage jump: the exact covariance, none, or Pyramid Flow's fixed blend
RENOISE_RULES = ("exact", "off", "pyramid-flow")
PYRAMID_FLOW_GAMMA = 1 / 3  # Pyramid Flow's block-noise correlation is -gamma


def renoise_rule(value: str | bool) -> str:
    """The named renoise rule of `value`: True / "true" -> "exact", False / "false" -> "off"
    (the flag of older configs), or one of RENOISE_RULES."""
    if isinstance(value, str):
        value = {"true": True, "false": False}.get(value.lower(), value.lower())
    if isinstance(value, bool):
        return "exact" if value else "off"
    if value not in RENOISE_RULES:
        raise ValueError(f"renoise must be one of {RENOISE_RULES} (or true / false), got {value!r}")
    return value


# ----------------------------------------------------------------------------- resampling


def _check_video(x: Tensor, what: str) -> None:
    if x.ndim != 5:
        raise ValueError(
            f"{what} expects a video shaped (B, C, F, H, W), got shape {tuple(x.shape)}"
        )


def downsample(x: Tensor) -> Tensor:
    """Average consecutive frame pairs: (B, C, F, H, W) -> (B, C, F/2, H, W)."""
    _check_video(x, "downsample")
    if x.shape[2] % 2:
        raise ValueError(f"downsample needs an even frame count, got F={x.shape[2]}")
    return (x[:, :, 0::2] + x[:, :, 1::2]) / 2


def upsample(x: Tensor, mode: str = "nearest") -> Tensor:
    """Temporal x2 upsampling (B, C, F, H, W) -> (B, C, 2F, H, W); downsample(upsample(y)) == y.

    - `nearest`: each frame repeated twice.
    - `linear`: piecewise-linear reconstruction that keeps every pair's mean:
      frames 2i, 2i+1 = y_i -/+ s_i / 4 with s_i the central-difference slope
      (one-sided at the ends, 0 for a single frame). Exact on linear motion.
    """
    _check_video(x, "upsample")
    if mode == "nearest":
        return x.repeat_interleave(2, dim=2)
    if mode == "linear":
        frames = x.shape[2]
        if frames == 1:
            return x.repeat_interleave(2, dim=2)
        slope = torch.empty_like(x)
        slope[:, :, 1:-1] = (x[:, :, 2:] - x[:, :, :-2]) / 2
        slope[:, :, 0] = x[:, :, 1] - x[:, :, 0]
        slope[:, :, -1] = x[:, :, -1] - x[:, :, -2]
        out = torch.stack([x - slope / 4, x + slope / 4], dim=3)  # (B, C, F, 2, H, W)
        return out.flatten(2, 3)
    raise ValueError(f"unknown upsample mode {mode!r}; choose one of {UPSAMPLE_MODES}")


def upsample_matrix(frames_in: int, mode: str) -> Tensor:
    """The operator U as a (2F, F) float64 matrix: upsample(y) == U @ y along frames."""
    eye = torch.eye(frames_in, dtype=torch.float64)  # (F, F): F one-hot videos
    video = eye.reshape(frames_in, 1, frames_in, 1, 1)
    return upsample(video, mode).reshape(frames_in, 2 * frames_in).T.contiguous()


@lru_cache(maxsize=64)
def _gram_eigh(frames_in: int, mode: str) -> tuple[Tensor, Tensor]:
    """Eigen-decomposition of U U^T (2F x 2F), computed once per (F, mode)."""
    u = upsample_matrix(frames_in, mode)
    evals, evecs = torch.linalg.eigh(u @ u.T)
    return evals.clamp(min=0.0), evecs


def lambda_max(frames_in: int, mode: str) -> float:
    """Largest eigenvalue of U U^T: 2 for `nearest`; slightly above 2 for `linear`."""
    return float(_gram_eigh(frames_in, mode)[0].max())


def restart_time(form: str | Form, u_end: float, lam: float) -> float:
    """Start time of the next stage: the u with SNR(u) = SNR(u_end) / lam."""
    form = get_form(form)
    return form.u_at_snr(float(form.snr(u_end)) / lam)


# ----------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Stage:
    """One stage: `frames` frames, integrated from u_start to u_end in `steps` steps."""

    index: int
    frames: int
    u_start: float
    u_end: float
    steps: int

    @property
    def length(self) -> float:
        return self.u_start - self.u_end


@dataclass(frozen=True)
class StagePlan:
    """Stages in sampling order. Build with `make_plan`, which validates and derives starts."""

    form: str
    num_frames: int
    upsample: str
    stages: tuple[Stage, ...]

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def jump_points(self) -> tuple[float, ...]:
        return tuple(s.u_end for s in self.stages[:-1])

    @property
    def steps(self) -> tuple[int, ...]:
        return tuple(s.steps for s in self.stages)

    @property
    def total_steps(self) -> int:
        return sum(self.steps)

    def to_dict(self) -> dict:
        """The plan's free parameters; `make_plan(**d)` rebuilds the same plan."""
        return dict(
            form=self.form,
            num_frames=self.num_frames,
            jump_points=list(self.jump_points),
            steps=list(self.steps),
            upsample=self.upsample,
        )

    def rows(self) -> list[dict]:
        """One dict per stage (for tables): frames, times, SNRs, steps."""
        form = get_form(self.form)
        out = []
        for s in self.stages:
            row = asdict(s)
            row["snr_start"] = float(form.snr(s.u_start))
            row["snr_end"] = float(form.snr(s.u_end))
            out.append(row)
        return out


def make_plan(
    form: str | Form,
    num_frames: int,
    jump_points: tuple[float, ...] | list[float] = (),
    steps: tuple[int, ...] | list[int] = (30,),
    upsample: str = "nearest",
) -> StagePlan:
    """Build a validated stage plan; K = len(jump_points) + 1 stages.

    `jump_points` are the end times of stages 0 .. K-2 (strictly descending in
    (0, 1)); every later stage's start follows from the SNR rule. K = 1 is the
    vanilla baseline. Raises ValueError naming the problem and the fix.
    """
    form = get_form(form)
    jump_points = tuple(float(u) for u in jump_points)
    steps = tuple(steps)
    k = len(jump_points) + 1
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"unknown upsample mode {upsample!r}; choose one of {UPSAMPLE_MODES}")
    if len(steps) != k:
        raise ValueError(
            f"steps has {len(steps)} entries but {len(jump_points)} jump points make K={k} "
            f"stages; give exactly one step count per stage"
        )
    for n in steps:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"step counts must be positive integers, got {steps}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    factor = 2 ** (k - 1)
    if num_frames % factor:
        raise ValueError(
            f"num_frames={num_frames} is not divisible by 2^(K-1)={factor} for K={k} stages; "
            f"use a multiple of {factor} frames or fewer stages"
        )
    if any(not 0.0 < u < 1.0 for u in jump_points):
        raise ValueError(f"jump points must lie strictly inside (0, 1), got {list(jump_points)}")
    if any(a <= b for a, b in zip(jump_points, jump_points[1:])):
        raise ValueError(
            f"jump points must be strictly descending (stage 0 is the noisiest), "
            f"got {list(jump_points)}"
        )

    # SNR / lambda >= ... means every start is noisier than its stage's predecessor's end,
    # hence above its own end: descending jump points always give valid stages
    ends = (*jump_points, 0.0)
    starts = [1.0]
    for i, u_end in enumerate(jump_points):
        lam = lambda_max(num_frames // 2 ** (k - 1 - i), upsample)
        try:
            starts.append(restart_time(form, u_end, lam))
        except ValueError as err:
            raise ValueError(f"jump point u={u_end:.4g} of stage {i}: {err}") from None

    stages = tuple(
        Stage(
            index=i,
            frames=num_frames // 2 ** (k - 1 - i),
            u_start=starts[i],
            u_end=ends[i],
            steps=steps[i],
        )
        for i in range(k)
    )
    return StagePlan(form=form.name, num_frames=num_frames, upsample=upsample, stages=stages)


def uniform_plan(
    form: str | Form, num_frames: int, num_stages: int = 3, total_steps: int = 30, **kw
) -> StagePlan:
    """The paper's default: jump points at u = 1 - k/K, steps split as evenly as possible."""
    jumps = tuple(1.0 - (i + 1) / num_stages for i in range(num_stages - 1))
    base, extra = divmod(total_steps, num_stages)
    steps = tuple(base + (1 if i < extra else 0) for i in range(num_stages))
    return make_plan(form, num_frames, jump_points=jumps, steps=steps, **kw)


def stage_data(x0: Tensor, plan: StagePlan, stage: int) -> Tensor:
    """x0^(k) = Down^(K-1-k)(x0): the full-rate video at stage k's frame rate."""
    _check_video(x0, "stage_data")
    if x0.shape[2] != plan.num_frames:
        raise ValueError(
            f"video has {x0.shape[2]} frames but the plan was made for {plan.num_frames}"
        )
    for _ in range(plan.num_stages - 1 - stage):
        x0 = downsample(x0)
    return x0


# ----------------------------------------------------------------------------- jumps


def jump(
    x_end: Tensor,
    form: str | Form,
    plan: StagePlan,
    to_stage: int,
    generator: torch.Generator | None = None,
    renoise: str | bool = "exact",
) -> Tensor:
    """Move a sample from the end of stage `to_stage - 1` to the start of `to_stage`.

        x_s' = c Up(x_e) + n,  c = alpha(u_s') / alpha(u_e),
        n ~ N(0, sigma(u_s')^2 I - c^2 sigma(u_e)^2 U U^T)

    so x_s' has exactly the training marginal alpha(u_s') Up(x0) + sigma(u_s') eps.
    `renoise` (RENOISE_RULES) picks the corrective noise: "exact" is the above; "off" drops
    it (same times and steps, but too little and frame-correlated noise); "pyramid-flow" is
    Pyramid Flow's fixed blend (`corrective_root`).
    x_end: (B, C, F_{k-1}, H, W) -> (B, C, F_k, H, W).
    """
    form = get_form(form)
    rule = renoise_rule(renoise)
    if not 1 <= to_stage < plan.num_stages:
        raise ValueError(f"to_stage must be in 1..{plan.num_stages - 1}, got {to_stage}")
    prev, nxt = plan.stages[to_stage - 1], plan.stages[to_stage]
    if x_end.shape[2] != prev.frames:
        raise ValueError(
            f"stage {prev.index} state has {x_end.shape[2]} frames, expected {prev.frames}"
        )
    a_e, s_e = float(form.alpha(prev.u_end)), float(form.sigma(prev.u_end))
    a_s, s_s = float(form.alpha(nxt.u_start)), float(form.sigma(nxt.u_start))
    c = a_s / a_e
    x = c * upsample(x_end, plan.upsample)
    if rule == "off":
        return x
    try:
        root = corrective_root(rule, prev.frames, plan.upsample, c * s_e, s_s)
    except ValueError as err:
        raise ValueError(f"jump into stage {to_stage}: {err}") from None
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    noise = torch.einsum("gf,bcfhw->bcghw", root.to(dtype=x.dtype, device=x.device), z)
    return x + noise


def corrective_root(rule: str, frames_in: int, mode: str, carried: float, target: float) -> Tensor:
    """Square root R (2F x 2F, float64) of the corrective noise's frame covariance R R^T at a
    jump whose upsampled state carries noise of std `carried` = c sigma(u_e) per frame
    (covariance carried^2 U U^T) and must start at std `target` = sigma(u_s').

    - "exact": R R^T = target^2 I - carried^2 U U^T, so the sum is target^2 I.
    - "pyramid-flow": every pair of frames (2i, 2i+1) made from one frame gets block noise
      with correlation -gamma (gamma = 1/3), scaled so each frame's variance is right:
      beta^2 [[1, -gamma], [-gamma, 1]], beta^2 = target^2 - carried^2. The pair covariance
      left is carried^2 - gamma beta^2, zero only when carried^2 / target^2 =
      gamma / (1 + gamma) = 1/4; the SNR rule's starts give 1/2 for `nearest`.
    """
    if rule == "exact":
        evals, evecs = _gram_eigh(frames_in, mode)
        var = target**2 - carried**2 * evals  # eigenvalues of the corrective covariance
        if float(var.min()) < -1e-9 * target**2:
            raise ValueError(
                f"a jump would need a negative noise variance ({float(var.min()):.3g}); the "
                "next stage's start must satisfy the SNR rule (use make_plan)"
            )
        return (evecs * var.clamp(min=0).sqrt()) @ evecs.T
    if rule == "pyramid-flow":
        if mode != "nearest":
            raise ValueError(
                "renoise=pyramid-flow blends pairs of repeated frames, so it needs "
                f"upsample=nearest (got {mode!r}); use renoise=exact with {mode!r}"
            )
        beta2 = target**2 - carried**2
        if beta2 < -1e-9 * target**2:
            raise ValueError(
                f"a jump would need a negative noise variance ({beta2:.3g}): the next "
                "stage's noise level must be at least the rescaled end's, "
                "sigma(u_s') >= c sigma(u_e) (use make_plan)"
            )
        g = PYRAMID_FLOW_GAMMA
        pair = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64) / 2**0.5
        block = pair * torch.tensor([(1 - g) ** 0.5, (1 + g) ** 0.5], dtype=torch.float64)
        return torch.block_diag(*[block] * frames_in) * max(beta2, 0.0) ** 0.5
    raise ValueError(f"no corrective noise for rule {rule!r}; choose one of {RENOISE_RULES}")

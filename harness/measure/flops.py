"""FLOP counting with fvcore, attention included, and plan-level costs.

Convention (stated in every table): fvcore counts one fused multiply-add as one
"flop"; we call that a MAC and report FLOPs = 2 x MACs. Matrix products,
convolutions and attention carry nearly all of it; fvcore's own small counts
for norms and upsampling are kept; other elementwise ops and softmax count zero.

fvcore's `FlopCountAnalysis` counts `aten::scaled_dot_product_attention` as
zero (an unsupported op), which makes a video transformer's cost look linear in
the frame count. `ATTENTION_HANDLES` adds the real count: for q (..., Lq, E),
k (..., Lk, E), v (..., Lk, Ev) the two products QK^T and AV cost
prod(...) * Lq * Lk * (E + Ev) MACs.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import nn

from harness.engine.pyramid import StagePlan
from harness.engine.stagewise import stage_probabilities

ATTENTION_OPS = (
    "aten::scaled_dot_product_attention",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
)


def sdpa_macs(inputs, outputs) -> Counter:
    """fvcore handle: MACs of softmax(Q K^T) V; q (..., Lq, E), k (..., Lk, E), v (..., Lk, Ev)."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = math.prod(q[:-2])
    return Counter({"attention": batch * q[-2] * k[-2] * (q[-1] + v[-1])})


def baddbmm_macs(inputs, outputs) -> Counter:
    """fvcore handle: baddbmm(input, b1 (B, n, m), b2 (B, m, p)) costs B * n * m * p MACs."""
    b1, b2 = get_shape(inputs[1]), get_shape(inputs[2])
    return Counter({"baddbmm": b1[0] * b1[1] * b1[2] * b2[2]})


ATTENTION_HANDLES = {op: sdpa_macs for op in ATTENTION_OPS} | {"aten::baddbmm": baddbmm_macs}


@dataclass(frozen=True)
class FlopCount:
    """Forward cost of one call. `by_operator` in MACs; `unsupported` lists skipped ops."""

    macs: int
    attention_macs: int
    by_operator: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def attention_share(self) -> float:
        return self.attention_macs / self.macs if self.macs else 0.0


def count_macs(model: nn.Module, inputs: Sequence[torch.Tensor]) -> FlopCount:
    """Forward MACs of `model(*inputs)` (fvcore trace + attention handles), in eval mode."""
    analysis = FlopCountAnalysis(model, tuple(inputs))
    for op, handle in ATTENTION_HANDLES.items():
        analysis.set_op_handle(op, handle)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings from diffusers' shape checks
            by_op = dict(analysis.by_operator())
    finally:
        model.train(was_training)
    # diffusers uses baddbmm only for attention scores (non-SDPA processors)
    attention = by_op.get("attention", 0) + by_op.get("baddbmm", 0)
    return FlopCount(
        macs=int(sum(by_op.values())),
        attention_macs=int(attention),
        by_operator={k: int(v) for k, v in by_op.items()},
        unsupported=dict(analysis.unsupported_ops()),
    )


def plan_macs(macs_at_frames: dict[int, int], plan: StagePlan) -> int:
    """Inference MACs of a whole plan: sum over stages of steps_k x forward MACs at F_k."""
    return sum(s.steps * macs_at_frames[s.frames] for s in plan.stages)


def speedup_bound(macs_at_frames: dict[int, int], vanilla: StagePlan, tpdiff: StagePlan) -> float:
    """FLOP ratio of the vanilla plan over the TPDiff plan (an upper bound on the speedup)."""
    return plan_macs(macs_at_frames, vanilla) / plan_macs(macs_at_frames, tpdiff)


def expected_training_macs(
    macs_at_frames: dict[int, int],
    plan: StagePlan,
    weighting: str = "length",
    backward_factor: float = 3.0,
) -> float:
    """Expected MACs of one training step (per sample) under the stage distribution.

    Uses the documented convention forward + backward = 3 x forward (`backward_factor`)."""
    probs = stage_probabilities(plan, weighting).tolist()
    return backward_factor * sum(p * macs_at_frames[s.frames] for p, s in zip(probs, plan.stages))

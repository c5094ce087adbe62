import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from harness.engine.pyramid import make_plan, uniform_plan
from harness.measure.flops import count_macs, expected_training_macs, plan_macs, speedup_bound
from harness.models.backbones import build_backbone


class AttentionBlock(nn.Module):
    """q, k, v projections, multi-head SDPA, output projection."""

    def __init__(self, dim=32, heads=4):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x):  # (B, N, dim)
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d / heads)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


def test_attention_block_matches_a_hand_count():
    b, n, d = 2, 50, 32
    count = count_macs(AttentionBlock(d, 4), (torch.randn(b, n, d),))
    projections = b * n * d * 3 * d + b * n * d * d
    attention = b * n * n * d * 2  # QK^T and AV: heads x (d / heads) = d
    assert count.attention_macs == attention
    assert count.macs == projections + attention
    assert count.flops == 2 * count.macs


def test_attention_grows_quadratically_with_tokens():
    block = AttentionBlock(32, 4)
    small = count_macs(block, (torch.randn(1, 64, 32),))
    large = count_macs(block, (torch.randn(1, 128, 32),))
    assert large.attention_macs == 4 * small.attention_macs
    assert large.macs - large.attention_macs == 2 * (small.macs - small.attention_macs)


class ConvAndLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.lin = nn.Linear(8, 16)

    def forward(self, x):
        y = self.conv(x).mean((2, 3))
        return self.lin(y) @ torch.ones(16, 4)


def test_fvcore_agrees_with_flop_counter_mode_on_shared_ops():
    model, x = ConvAndLinear(), torch.randn(2, 3, 10, 10)
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert counter.get_total_flops() == 2 * count_macs(model, (x,)).macs


def test_dit_cost_is_superlinear_in_frames_with_attention_counted():
    model = build_backbone("dit", "tiny")
    costs = {
        f: count_macs(model, (torch.randn(1, 1, f, 32, 32), torch.rand(1), torch.randn(1, 8, 64)))
        for f in (2, 4, 8)
    }
    assert all(c.attention_macs > 0 for c in costs.values())
    assert costs[8].attention_macs > 3.9 * costs[4].attention_macs  # ~ 4x: tokens^2
    assert costs[8].macs > 2 * costs[4].macs
    assert "aten::scaled_dot_product_attention" not in costs[8].unsupported


def test_plan_costs_and_bound():
    macs = {4: 10, 8: 30, 16: 100}  # made-up per-forward costs
    vanilla = make_plan("flow", 16, (), (30,))
    tpdiff = uniform_plan("flow", 16, 3, 30)
    assert plan_macs(macs, vanilla) == 3000
    assert plan_macs(macs, tpdiff) == 10 * (10 + 30 + 100)
    assert speedup_bound(macs, vanilla, tpdiff) == pytest.approx(3000 / 1400)
    lengths = [s.u_start - s.u_end for s in tpdiff.stages]
    weighted = sum(ell * macs[s.frames] for ell, s in zip(lengths, tpdiff.stages))
    expected = 3 * weighted / sum(lengths)
    assert expected_training_macs(macs, tpdiff) == pytest.approx(expected)
    assert expected_training_macs(macs, vanilla) == 300

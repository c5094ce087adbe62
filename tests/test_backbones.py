import pytest
import torch
from diffusers import UNetMotionModel, WanTransformer3DModel

from harness.models.backbones import BACKBONES, VideoBackbone, build_backbone

NAMES = sorted(BACKBONES)
PYRAMID_FRAMES = (1, 2, 4, 8, 16)  # every frame count a temporal pyramid plan uses


def build(name, seed=0, **kwargs):
    torch.manual_seed(seed)
    return build_backbone(name, "tiny", **kwargs)


def inputs(channels=1, frames=4, batch=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, frames, 32, 32, generator=g)  # (B, C, F, H, W)
    u = torch.rand(batch, generator=g)  # (B,)
    cond = torch.randn(batch, 12, 64, generator=g)  # (B, L, text_dim)
    return x, u, cond


def test_registry_names_classes_and_forms():
    assert NAMES == ["dit", "unet"]
    dit, unet = build("dit"), build("unet")
    assert isinstance(dit, VideoBackbone) and isinstance(dit.inner, WanTransformer3DModel)
    assert isinstance(unet.inner, UNetMotionModel)
    assert (dit.name, dit.size, dit.default_form) == ("dit", "tiny", "flow")
    assert (unet.name, unet.size, unet.default_form) == ("unet", "tiny", "ddim")
    assert unet.config["motion_max_seq_length"] >= 16
    assert dit.config["rope_max_seq_len"] >= 16
    for model in (dit, unet):  # config round-trips through the diffusers class
        rebuilt = type(model.inner)(**model.config)
        assert sum(p.numel() for p in rebuilt.parameters()) == sum(
            p.numel() for p in model.inner.parameters()
        )


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shape_for_every_pyramid_frame_count(name, channels):
    model = build(name, in_channels=channels)
    for frames in PYRAMID_FRAMES:
        x, u, cond = inputs(channels, frames)
        with torch.no_grad():
            out = model(x, u, cond)
        assert out.shape == x.shape, (frames, out.shape)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_grows_by_the_io_layers_per_channel(name):
    # known answer: only the input and output layers see C.
    # dit: patch conv C*8*D weights + proj_out D*C*8 weights + C*8 biases (patch 1x2x4, D = 32)
    # unet: conv_in C*9*8 weights + conv_out 8*9*C weights + C biases (3x3 convs, 8 channels)
    per_channel = {"dit": 8 * 32 * 2 + 8, "unet": 9 * 8 * 2 + 1}[name]
    one, three = (sum(p.numel() for p in build(name, in_channels=c).parameters()) for c in (1, 3))
    assert three - one == 2 * per_channel


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    model = build(name)
    x, u, cond = inputs(frames=4)
    cond.requires_grad_(True)
    model(x, u, cond).square().mean().backward()
    for key, p in model.named_parameters():
        assert p.grad is not None, key
        assert torch.isfinite(p.grad).all(), key
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0
    assert cond.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_output_depends_on_time_and_text(name):
    model = build(name)
    x, u, cond = inputs(frames=4)
    with torch.no_grad():
        out = model(x, u, cond)
        other_u = model(x, (u + 0.3) % 1.0, cond)
        other_cond = model(x, u, cond.flip(0))
        small_du = model(x, u + 1e-4, cond)  # t moves by 0.1
    assert not torch.allclose(out, other_u, atol=1e-4)
    assert not torch.allclose(out, other_cond, atol=1e-4)
    assert not torch.equal(out, small_du)  # continuous time, not rounded to integer steps


@pytest.mark.parametrize("name", NAMES)
def test_construction_is_deterministic_under_a_seed(name):
    a, b, c = build(name, seed=3), build(name, seed=3), build(name, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    x, u, cond = inputs(frames=2)
    with torch.no_grad():
        assert torch.equal(a(x, u, cond), b(x, u, cond))


@pytest.mark.parametrize("name", NAMES)
def test_too_many_frames_is_a_clear_error(name):
    model = build(name, max_frames=16)
    x, u, cond = inputs(frames=17, batch=1)
    match = {"dit": "rope_max_seq_len", "unet": "motion_max_seq_length"}[name]
    with pytest.raises(ValueError, match=match):
        model(x, u, cond)


def test_unknown_name_or_size_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown backbone 'vit'.*\['dit', 'unet'\]"):
        build_backbone("vit")
    for name in NAMES:
        with pytest.raises(ValueError, match=r"unknown .* size 'huge'.*'tiny', 'small'"):
            build_backbone(name, size="huge")

"""The device paths, one test body per path, run on the device `TPDIFF_TEST_DEVICE` names:
`cpu` by default (CI), `cuda` under `python -m harness.run --suite gpu-check`. Marked
`cuda`: `python -m pytest -m cuda` runs exactly these.

On CPU each test checks the path as the CPU runs it (float32, perf_counter, eager or
compiled); on CUDA the same body checks what the GPU adds (placement on the card, bf16
autocast, a fused attention kernel, CUDA events, bit-identical resume where CUDA allows).
"""

import pytest
import torch

import harness.pipeline.train as train
from harness.common.config import Config
from harness.engine.sampler import autocast_model
from harness.measure.timing import measure
from harness.models.execution import compiled
from harness.pipeline.build import build

pytestmark = pytest.mark.cuda

TINY = ["size=tiny", "frames=8", "resolution=32", "batch_size=4", "num_videos=64",
        "warmup_steps=2", "sample_steps=6", "num_samples=2"]  # fmt: skip


def _cfg(tmp_path, device, *extra) -> Config:
    return Config().override([*TINY, f"out_dir={tmp_path}", f"device={device.type}", *extra])


def _inputs(built, device, batch=2):
    """A batch the backbone takes: latents (B, C, F, h, w), u in (0, 1), the text condition."""
    c, f, h, w = built.codec.latent_shape(built.cfg.frames, built.cfg.resolution)
    x = torch.randn(batch, c, f, h, w, device=device)
    u = torch.rand(batch, device=device)
    ids = built.model.tokenize(["a 1 moving up"] * batch)
    with torch.no_grad():
        cond = built.model.text(ids.to(device))
    return x, u, cond


def test_the_model_and_its_text_encoder_sit_on_the_device(tmp_path, device):
    built = build(_cfg(tmp_path, device), device, data=False, progress=False)
    places = {p.device.type for p in built.model.parameters()}
    assert places == {device.type}, places
    x, u, cond = _inputs(built, device)
    assert cond.device.type == device.type
    with torch.no_grad():
        out = built.model.backbone(x, u, cond)
    assert out.device.type == device.type and out.shape == x.shape


def test_the_backbone_runs_in_bf16_on_cuda_and_float32_elsewhere(tmp_path, device):
    built = build(_cfg(tmp_path, device), device, data=False, progress=False)
    x, u, cond = _inputs(built, device)
    seen = []
    hook = next(m for m in built.model.backbone.modules() if isinstance(m, torch.nn.Linear))
    handle = hook.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.no_grad():
        out = autocast_model(built.model.backbone, device)(x, u, cond)
    handle.remove()
    assert out.dtype == torch.float32  # the solver stays float32 either way
    assert seen and seen[0] == (torch.bfloat16 if device.type == "cuda" else torch.float32)


def test_the_backbones_attention_runs_on_a_fused_kernel(tmp_path, device):
    """The DiT's forward with only fused SDPA kernels allowed (flash, memory-efficient or
    cuDNN on CUDA under bf16 autocast; flash on the CPU): a fallback to the math kernel
    raises, so passing means the harness's own attention took a fused one."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    built = build(_cfg(tmp_path, device, "backbone=dit"), device, data=False, progress=False)
    x, u, cond = _inputs(built, device)
    fused = ([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
              SDPBackend.CUDNN_ATTENTION] if device.type == "cuda"
             else [SDPBackend.FLASH_ATTENTION])  # fmt: skip
    net = autocast_model(built.model.backbone, device)
    with torch.no_grad(), sdpa_kernel(fused):
        out = net(x, u, cond)
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
        plain = net(x, u, cond)
    tol = 5e-2 if device.type == "cuda" else 1e-4  # bf16 on CUDA
    assert torch.allclose(out, plain, atol=tol, rtol=tol)


def test_timing_uses_cuda_events_on_cuda_and_the_clock_elsewhere(device, monkeypatch):
    made = []  # patched on the CPU too: there, no event may be made
    real = torch.cuda.Event
    monkeypatch.setattr(torch.cuda, "Event", lambda **kw: made.append(kw) or real(**kw))
    x = torch.randn(256, 256, device=device)
    timing = measure(lambda: x @ x, device, warmup=1, repeats=3)
    assert timing.repeats == 3 and 0 < timing.min_s <= timing.median_s <= timing.max_s
    assert len(made) == (6 if device.type == "cuda" else 0)  # a start and an end per repeat


def test_compiled_backbone_matches_eager(tmp_path, device):
    built = build(_cfg(tmp_path, device), device, data=False, progress=False)
    net = built.model.backbone.eval()
    x, u, cond = _inputs(built, device)
    backend = "inductor" if device.type == "cuda" else "aot_eager"  # no C++ build in CI
    with torch.no_grad():
        eager = net(x, u, cond)
        fast = compiled(net, backend)(x, u, cond)
    assert torch.allclose(fast, eager, atol=1e-4, rtol=1e-4)


def test_resume_is_bit_identical_where_the_device_allows(tmp_path, device, record_property,
                                                         request):  # fmt: skip
    """Stopping and resuming gives the same weights as one run: bit for bit on the CPU, and
    on CUDA whenever two uninterrupted runs agree bit for bit (cuBLAS made deterministic by
    the GPU check). Where they do not (a nondeterministic kernel), the resumed run may
    differ from one run by no more than two runs differ from each other, and the test
    records that it could not be bit-identical."""
    common = ("steps=4", "ckpt_every=2", "ema_decay=0.9")
    if device.type == "cuda":  # deterministic kernels where they exist (cuBLAS: the check's env)
        was = (torch.are_deterministic_algorithms_enabled(),
               torch.is_deterministic_algorithms_warn_only_enabled())  # fmt: skip
        request.addfinalizer(lambda: torch.use_deterministic_algorithms(was[0], warn_only=was[1]))
        torch.use_deterministic_algorithms(True, warn_only=True)
    straight = train.main(_cfg(tmp_path, device, *common, "name=straight"))
    train.main(_cfg(tmp_path, device, *common, "name=resumed"), stop_at=2)
    resumed = train.main(_cfg(tmp_path, device, *common, "name=resumed"))
    load = lambda run: torch.load(run / "checkpoint.pt", weights_only=False)["model"]  # noqa: E731
    a, b = load(straight), load(resumed)
    assert a.keys() == b.keys()
    gap = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    if device.type == "cpu":
        assert gap == 0, "resume changed the weights"
        return
    again = load(train.main(_cfg(tmp_path, device, *common, "name=again")))
    noise = max(float((a[k].float() - again[k].float()).abs().max()) for k in a)
    record_property("cuda_resume", "bit-identical" if gap == 0 else
                    f"not bit-identical: resume {gap:.3g}, run to run {noise:.3g}")  # fmt: skip
    assert gap == 0 if noise == 0 else gap <= 10 * noise

"""Pretrained pipelines from local folders (issue 9), at tiny random size on CPU.

The tests save tiny randomly initialised Wan2.1 and AnimateDiff pipelines with
save_pretrained and go through exactly the code a GPU user runs: layout check,
from_pretrained, latent encoding and cache, training, sampling, decoding.
"""

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_models import save_tiny_clip, write_video_folder
from video_files import replace_keeping_stat, stamps, write_folder

import harness.pipeline.build
import harness.pipeline.train as train
from harness.common.config import METHOD_FIELDS, Config
from harness.data import MovingDigits
from harness.data.fingerprint import content_hash
from harness.models.execution import compile_backbone
from harness.models.latents import LatentDataset, latent_frame_count, plan_frame_count
from harness.models.pretrained import check_layout, load_codec
from harness.pipeline.build import build_model, plan_for
from harness.pipeline.sample import generate

ROOT = Path(__file__).resolve().parent.parent
GPU_CONFIGS = ROOT / "baselines" / "gpu"
WAN_MEAN, WAN_STD = [0.1, -0.2, 0.3, 0.0], [1.5, 0.8, 1.2, 2.0]


def save_tiny_wan(root: Path) -> Path:
    """transformer/ vae/ text_encoder/ tokenizer/ of a tiny random Wan2.1 T2V pipeline."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    words = ["a", "moving", "and", "up", "down", "left", "right"]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(f"▁{w}", -1.0) for w in words] + [(c, -3.0) for c in "0123456789-"]
    T5Tokenizer(vocab=vocab, extra_ids=0).save_pretrained(root / "tokenizer")
    text = dict(vocab_size=len(vocab), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=2,
                relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                decoder_start_token_id=0)  # fmt: skip
    UMT5EncoderModel(UMT5Config(**text)).save_pretrained(root / "text_encoder")
    vae = dict(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
               latents_mean=WAN_MEAN, latents_std=WAN_STD)  # fmt: skip
    AutoencoderKLWan(**vae).save_pretrained(root / "vae")
    net = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=4,
               out_channels=4, text_dim=32, freq_dim=32, ffn_dim=64, num_layers=2,
               rope_max_seq_len=32)  # fmt: skip
    WanTransformer3DModel(**net).save_pretrained(root / "transformer")
    return root


def save_tiny_animatediff(root: Path) -> Path:
    """unet/ motion_adapter/ vae/ text_encoder/ tokenizer/ of a tiny random AnimateDiff."""
    from diffusers import AutoencoderKL, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTokenizer

    torch.manual_seed(0)
    save_tiny_clip(root / "text_encoder")
    CLIPTokenizer.from_pretrained(root / "text_encoder").save_pretrained(root / "tokenizer")
    vae = dict(down_block_types=("DownEncoderBlock2D",) * 2, block_out_channels=(8, 16),
               up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
               norm_num_groups=4)  # fmt: skip
    AutoencoderKL(**vae).save_pretrained(root / "vae")
    unet = dict(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(16, 32),
                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                norm_num_groups=8, cross_attention_dim=32, attention_head_dim=4)  # fmt: skip
    UNet2DConditionModel(**unet).save_pretrained(root / "unet")
    adapter = dict(block_out_channels=(16, 32), motion_layers_per_block=1,
                   motion_num_attention_heads=2, motion_norm_num_groups=8,
                   motion_max_seq_length=32)  # fmt: skip
    MotionAdapter(**adapter).save_pretrained(root / "motion_adapter")
    return root


# video frames per pipeline: Wan 13 = 1 + 4 * 3 -> 4 latent frames; AnimateDiff 4 -> 4
WAN = ["backbone=dit", "form=flow", "frames=13", "text_len=12"]
ANIMATEDIFF = ["backbone=unet", "form=ddim", "frames=4", "text_len=16"]
PIPELINES = {"wan": (save_tiny_wan, WAN), "animatediff": (save_tiny_animatediff, ANIMATEDIFF)}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipelines")
    return {name: save(base / name) for name, (save, _) in PIPELINES.items()}


def overrides(folder: Path, pipeline: str, out: Path, *extra: str) -> list[str]:
    common = [f"pretrained={folder}", f"out_dir={out}", "channels=3", "resolution=32",
              "num_videos=6", "batch_size=2", "steps=2", "warmup_steps=1", "encode_batch=4",
              "sample_steps=3", "num_samples=2"]  # fmt: skip
    return [*common, *PIPELINES[pipeline][1], *extra]


def config(folder: Path, pipeline: str, out: Path, *extra: str) -> Config:
    return Config().override(overrides(folder, pipeline, out, *extra))


def expected_latents(folder: Path, pipeline: str, videos: torch.Tensor) -> torch.Tensor:
    """The normalised VAE posterior means, computed here with diffusers directly."""
    from diffusers import AutoencoderKL, AutoencoderKLWan

    with torch.no_grad():
        if pipeline == "wan":
            vae = AutoencoderKLWan.from_pretrained(folder / "vae")
            z = vae.encode(videos).latent_dist.mean
            mean, std = torch.tensor(WAN_MEAN), torch.tensor(WAN_STD)
            return (z - mean.view(1, -1, 1, 1, 1)) / std.view(1, -1, 1, 1, 1)
        vae = AutoencoderKL.from_pretrained(folder / "vae")
        frames = [vae.encode(videos[:, :, f]).latent_dist.mean for f in range(videos.shape[2])]
        return torch.stack(frames, dim=2) * vae.config.scaling_factor


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_pipeline_encodes_trains_both_methods_samples_and_decodes(folders, tmp_path, pipeline):
    folder = folders[pipeline]
    runs = {}
    for method in ("vanilla", "tpdiff"):
        cfg = config(folder, pipeline, tmp_path, f"method={method}", f"name={method}")
        if method == "vanilla":  # the weights the run starts from are the folder's
            model = build_model(cfg)
            net = folder / ("transformer" if pipeline == "wan" else "unet")
            saved = load_file(net / "diffusion_pytorch_model.safetensors")
            state = model.backbone.inner.state_dict()
            assert saved and all(torch.equal(state[k], v) for k, v in saved.items())
            if pipeline == "animatediff":
                adapter = load_file(
                    folder / "motion_adapter" / "diffusion_pytorch_model.safetensors"
                )
                assert adapter and all(torch.equal(state[k], v) for k, v in adapter.items())
            assert not list(model.text.parameters()), "the text encoder is frozen, outside"
        runs[method] = train.main(cfg)
        rows = [json.loads(line) for line in (runs[method] / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2]
        assert all(np.isfinite(r["loss"]) for r in rows)
        frames = {s.frames for s in plan_for(cfg).stages}
        assert frames == ({4} if method == "vanilla" else {1, 2, 4})
        assert {r["frames"] for r in rows} <= frames
        weights = torch.load(runs[method] / "checkpoint.pt", weights_only=False)["model"]
        assert all(k.startswith("backbone.") for k in weights)
        key = next(k for k in state if k in saved and state[k].ndim == 2)
        assert not torch.equal(weights[f"backbone.inner.{key}"], saved[key]), "no update"

    # one cache for both methods: the dataset's videos through the VAE, once
    cache = sorted((tmp_path / "latents").glob("*/index.json"))
    assert len(cache) == 1
    latents = LatentDataset(cache[0].parent)
    assert (latents.channels, latents.frames, len(latents)) == (4, 4, 6)
    data = MovingDigits(num_videos=6, frames=cfg.frames, size=32, channels=3, seed=0)
    videos = torch.stack([data[i]["video"] for i in range(3)])
    want = expected_latents(folder, pipeline, videos)
    got = torch.stack([latents[i]["video"] for i in range(3)])
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=2e-3 * float(want.abs().max()), rtol=1e-3)
    assert latents[1]["caption"] == data[1]["caption"]

    # sampling runs the plan on latents and decodes: video frames come back
    gen = generate(runs["tpdiff"], progress=False)
    assert gen.videos.shape == (2, 3, cfg.frames, 32, 32)
    assert gen.videos.abs().max() <= 1 and gen.videos.std() > 0
    assert [s.frames for s in gen.plan.stages] == [1, 2, 4]


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.parametrize("pipeline", PIPELINES)
def test_pipeline_fine_tunes_both_methods_on_the_device_then_samples_and_scores(
    folders, tmp_path, pipeline, device
):
    """The GPU check's fine-tuning: 20 steps of each method from the pipeline's weights on
    the test device (bf16 autocast on CUDA), sampled there and scored on motion."""
    from harness.metrics import MetricOptions, VideoSet, compute_metrics

    real = MovingDigits(num_videos=6, frames=config(folders[pipeline], pipeline, tmp_path).frames,
                        size=32, channels=3, seed=0)  # fmt: skip
    reference = VideoSet(torch.stack([real[i]["video"] for i in range(2)]),
                         tuple(real[i]["caption"] for i in range(2)))  # fmt: skip
    for method in ("vanilla", "tpdiff"):
        cfg = config(folders[pipeline], pipeline, tmp_path, f"method={method}", f"name={method}",
                     "steps=20", f"device={device.type}")  # fmt: skip
        run = train.main(cfg)
        rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == list(range(1, 21))
        assert all(np.isfinite(r["loss"]) for r in rows)
        gen = generate(run, dict(device=device.type), progress=False)
        assert gen.videos.shape == (2, 3, cfg.frames, 32, 32) and torch.isfinite(gen.videos).all()
        scores = compute_metrics(VideoSet(gen.videos.cpu(), tuple(gen.captions)), reference,
                                 ["flicker", "motion"], MetricOptions())  # fmt: skip
        assert np.isfinite(scores["motion-gap"]) and np.isfinite(scores["flicker"])


def test_video_folder_latents_and_sampling_prompts_come_from_the_cache(
    folders, tmp_path, monkeypatch
):
    clips = write_video_folder(tmp_path / "clips", good=2, frames=6)
    cfg = config(folders["animatediff"], "animatediff", tmp_path, "dataset=video-folder",
                 f"data_root={clips}", "steps=1", "name=clips")  # fmt: skip
    with pytest.warns(UserWarning, match="broken.mp4"):
        run = train.main(cfg)
    (cache,) = (tmp_path / "latents").glob("*/index.json")
    captions = LatentDataset(cache.parent).captions
    assert captions == ["a square moving right 0", "a square moving right 1"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("sampling decoded the video folder again")

    monkeypatch.setattr(harness.pipeline.build, "build_data", no_decoding)
    gen = generate(run, progress=False)
    assert gen.captions == captions and gen.videos.shape == (2, 3, 4, 32, 32)


def test_prepare_decodes_into_shards_then_fills_the_latent_cache(folders, tmp_path, monkeypatch):
    from harness.pipeline.prepare import main as prepare

    clips = write_video_folder(tmp_path / "clips", good=2, frames=6)
    cfg = config(folders["animatediff"], "animatediff", tmp_path, "dataset=video-folder",
                 f"data_root={clips}", "steps=1", "name=prepared")  # fmt: skip
    shards = prepare(cfg, workers=1, progress=False)
    assert "broken.mp4" in json.loads((shards / "index.json").read_text())["skipped"]
    (cache,) = (tmp_path / "latents").glob("*/index.json")
    assert LatentDataset(cache.parent).captions == ["a square moving right 0",
                                                        "a square moving right 1"]  # fmt: skip

    def no_encoding(*args, **kwargs):
        raise AssertionError("training encoded the videos again")

    monkeypatch.setattr("harness.models.pretrained.encode_to_cache", no_encoding)
    train.main(cfg)  # reads the latent cache the preparation filled


def test_prepare_under_torchrun_decodes_once_and_encodes_on_every_rank(folders, tmp_path):
    from harness.data.prepared import PreparedVideos

    clips = write_video_folder(tmp_path / "clips", good=3, frames=6)
    args = overrides(folders["animatediff"], "animatediff", tmp_path, "dataset=video-folder",
                     f"data_root={clips}", "name=ddp-prepare")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "harness.prepare", "--workers", "1", *args]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("skipped broken.mp4") == 1  # rank 0 alone decoded the folder
    (shards,) = (tmp_path / "prepared").glob("videos-*")
    videos = PreparedVideos(shards)
    (cache,) = (tmp_path / "latents").glob("*/index.json")
    latents = LatentDataset(cache.parent)
    assert latents.captions == videos.captions and len(latents) == 3
    want = expected_latents(folders["animatediff"], "animatediff",
                            torch.stack([videos[i]["video"] for i in range(3)]))  # fmt: skip
    got = torch.stack([latents[i]["video"] for i in range(3)])
    torch.testing.assert_close(got, want, atol=2e-3 * float(want.abs().max()), rtol=1e-3)


def test_a_changed_clip_is_encoded_again_at_the_next_training_start(
    folders, tmp_path, monkeypatch, capsys
):
    import harness.models.pretrained as pretrained
    from harness.data.video_folder import decode_clip
    from harness.models.latents import encode_to_cache

    clips = write_folder(tmp_path / "clips", 3)
    cfg = config(folders["animatediff"], "animatediff", tmp_path, "dataset=video-folder",
                 f"data_root={clips}")  # fmt: skip
    small = functools.partial(encode_to_cache, shard_size=2)  # two shards: videos 0-1, 2
    monkeypatch.setattr(pretrained, "encode_to_cache", small)

    def start(make_videos=lambda: harness.pipeline.build.build_data(cfg)) -> LatentDataset:
        return pretrained.latent_dataset(cfg, make_videos, torch.device("cpu"), progress=False)

    start()
    (cache,) = (tmp_path / "latents").glob("*/index.json")
    kept = stamps(cache.parent, "latents_00000.*")

    def untouched(*args, **kwargs):
        raise AssertionError("built the videos or encoded although nothing changed")

    with monkeypatch.context() as patch:  # unchanged: the fast path opens it as it is
        patch.setattr(pretrained, "encode_to_cache", untouched)
        assert len(start(untouched)) == 3
    replace_keeping_stat(clips / "clip2.y4m", 6)
    capsys.readouterr()
    again = start()
    assert "latents_00001: video 2 is another video" in capsys.readouterr().out
    assert stamps(cache.parent, "latents_00000.*") == kept
    video = decode_clip(clips / "clip2.y4m", 4, 32, 1, 3)[None]
    want = expected_latents(folders["animatediff"], "animatediff", video)[0]
    torch.testing.assert_close(again[2]["video"], want, atol=2e-3 * float(want.abs().max()),
                               rtol=1e-3)  # fmt: skip
    index = json.loads(cache.read_text())
    assert index["source"]["files"]["clip2.y4m"]["hash"] == content_hash(clips / "clip2.y4m")


def test_wan_vae_maps_1_plus_4n_frames_to_1_plus_n_latents(folders):
    codec = load_codec(config(folders["wan"], "wan", Path("unused")))
    for frames in (1, 5, 13):
        video = torch.rand(1, 3, frames, 16, 16) * 2 - 1
        z = codec.encode(video)
        assert z.shape == (1, 4, codec.latent_frames(frames), 2, 2) == (1, 4, 1 + frames // 4, 2, 2)
        assert codec.decode(z).shape == video.shape


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_decoding_undoes_the_normalisation_as_diffusers_decodes(folders, pipeline):
    codec = load_codec(config(folders[pipeline], pipeline, Path("unused")))
    z = torch.randn(2, 4, 4, 2, 2) * 0.5  # normalised latents, 4 latent frames
    with torch.no_grad():
        if pipeline == "wan":
            mean = torch.tensor(WAN_MEAN).view(1, -1, 1, 1, 1)
            std = torch.tensor(WAN_STD).view(1, -1, 1, 1, 1)
            want = codec.vae.decode(z * std + mean).sample
        else:
            frames = z.permute(0, 2, 1, 3, 4).flatten(0, 1) / codec.vae.config.scaling_factor
            want = codec.vae.decode(frames).sample.unflatten(0, (2, 4)).permute(0, 2, 1, 3, 4)
    got = codec.decode_batched(z, batch=1)
    assert got.shape[2] == (13 if pipeline == "wan" else 4)
    torch.testing.assert_close(got, want.clamp(-1, 1), atol=1e-5, rtol=1e-5)


def test_latent_frame_rule_and_its_errors():
    assert latent_frame_count(77, 4, True) == 20 and latent_frame_count(16, 1, False) == 16
    assert plan_frame_count(77, 3, 4, True) == 20
    with pytest.raises(
        ValueError, match="21 latent frames.*divisible by 2\\^\\(K-1\\)=4.*frames=77"
    ):
        plan_frame_count(81, 3, 4, True)
    base = dict(pretrained="/somewhere", channels=3)
    assert plan_for(Config(**base, frames=77, method="vanilla")).num_frames == 20
    assert [s.frames for s in plan_for(Config(**base, frames=77)).stages] == [5, 10, 20]
    with pytest.raises(ValueError, match="use frames=77 \\(20 latent\\) or frames=93"):
        plan_for(Config(**base, frames=81))
    assert plan_for(Config(**base, frames=81, method="vanilla")).num_frames == 21
    # a pretrained config is checked where the run is built (here: its plan)
    with pytest.raises(ValueError, match="encodes 1 \\+ 4n video frames; use frames=77 or 81"):
        plan_for(Config(**base, frames=80))
    with pytest.raises(ValueError, match="set form=flow"):
        plan_for(Config(**base, frames=77, form="ddim"))
    with pytest.raises(ValueError, match="set channels=3"):
        plan_for(Config(pretrained="/somewhere", frames=77))
    with pytest.raises(ValueError, match="text_encoder/ and tokenizer/"):
        plan_for(Config(**base, frames=77, text_encoder="/clip"))
    animatediff = Config(**base, backbone="unet", form="ddim", frames=16)
    assert [s.frames for s in plan_for(animatediff).stages] == [4, 8, 16]


def test_missing_or_mismatched_folders_name_the_expected_layout(folders, tmp_path, monkeypatch):
    layout = "expected layout for backbone=dit"
    with pytest.raises(FileNotFoundError, match=f"does not exist.\n{layout}"):
        check_layout(str(tmp_path / "nowhere"), "dit")
    with pytest.raises(FileNotFoundError, match="looks like a backbone=unet folder.*transformer/"):
        check_layout(str(folders["animatediff"]), "dit")
    broken = shutil.copytree(folders["wan"], tmp_path / "broken")
    shutil.rmtree(broken / "vae")
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing transformer/ weights.*; vae/ \\(no such"):
        check_layout(str(broken), "dit")
    with pytest.raises(FileNotFoundError, match="transformer/ +config.json \\(WanTransformer3D"):
        train.main(config(broken, "wan", tmp_path))  # the same check guards training

    mixed = shutil.copytree(folders["wan"], tmp_path / "mixed")
    shutil.rmtree(mixed / "vae")
    shutil.copytree(folders["animatediff"] / "vae", mixed / "vae")
    with pytest.raises(ValueError, match="vae/ holds a AutoencoderKL, expected AutoencoderKLWan"):
        check_layout(str(mixed), "dit")
    wide = shutil.copytree(folders["wan"], tmp_path / "wide")
    path = wide / "transformer" / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"in_channels": 8}))
    with pytest.raises(ValueError, match="transformer in_channels 8 != vae z_dim 4"):
        check_layout(str(wide), "dit")

    monkeypatch.delenv("TPDIFF_WAN", raising=False)
    with pytest.raises(ValueError, match="TPDIFF_WAN, which is not set"):
        check_layout("${TPDIFF_WAN}", "dit")
    monkeypatch.setenv("TPDIFF_WAN", str(folders["wan"]))
    assert check_layout("${TPDIFF_WAN}", "dit") == folders["wan"]


def test_wan_text_embeddings_are_zero_past_the_prompt(folders):
    model = build_model(config(folders["wan"], "wan", Path("unused")))
    emb = model.tokenize(["a 3 moving up", "a 7 moving down and a 1 moving left"])
    assert emb.shape == (2, 12, 32)
    length = (emb.abs().sum(-1) > 0).sum(1).tolist()
    assert length[0] < length[1] <= 12 and (emb[0, length[0] :] == 0).all()


def test_checkpointing_attention_backend_and_compile_keep_the_outputs(folders):
    from diffusers.models.attention_dispatch import AttentionBackendName, _AttentionBackendRegistry

    cfg = config(folders["wan"], "wan", Path("unused"))
    x, u = torch.randn(2, 4, 4, 4, 4), torch.tensor([0.3, 0.8])
    cond = build_model(cfg).tokenize(["a 3 moving up", "a 5"])
    outs, grads = [], []
    try:
        for extra in ([], ["grad_checkpointing=true", "attention=_native_math"]):
            model = build_model(cfg.override(extra))
            out = model(x, u, cond)
            out.square().mean().backward()
            outs.append(out.detach())
            grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
        inner = model.backbone.inner
        assert inner.is_gradient_checkpointing
        assert {b.processor._attention_backend for b in inner.blocks for b in (b.attn1,)} == {
            AttentionBackendName._NATIVE_MATH
        }
    finally:
        _AttentionBackendRegistry.set_active_backend(AttentionBackendName.NATIVE)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(grads[1], grads[0], atol=1e-5, rtol=1e-4)

    compile_backbone(model.backbone, "eager")
    with torch.no_grad():
        torch.testing.assert_close(model(x, u, cond), outs[1], atol=1e-5, rtol=1e-4)
    unet = config(folders["animatediff"], "animatediff", Path("unused"), "attention=flash")
    with pytest.raises(ValueError, match="use attention=native"):
        build_model(unet)


@pytest.mark.slow
def test_fsdp_under_torchrun_saves_full_weights_that_sample(folders, tmp_path):
    args = overrides(folders["wan"], "wan", tmp_path, "name=fsdp", "fsdp=true",
                     "grad_checkpointing=true")  # fmt: skip
    cfg = Config().override(args)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "harness.train", *args]  # fmt: skip
    for steps in (2, 3):  # train, then resume from the gathered checkpoint
        done = subprocess.run([*cmd, f"steps={steps}"], env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        if steps == 2:
            state = torch.load(tmp_path / "fsdp" / "checkpoint.pt", weights_only=False)
    run = tmp_path / "fsdp"
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["samples_seen"] == 6
    shapes = {k: v.shape for k, v in build_model(cfg).state_dict().items()}
    assert {k: v.shape for k, v in state["model"].items()} == shapes  # full, not shards
    opt_keys = list(state["opt"]["state"])  # FSDP's gathered optimizer state: by parameter name
    assert opt_keys and all(k.startswith("backbone.inner.") for k in opt_keys)
    assert len(cache := list((tmp_path / "latents").glob("*/index.json"))) == 1
    latents = LatentDataset(cache[0].parent)
    assert not any(np.isnan(latents[i]["video"].numpy()).any() for i in range(len(latents)))
    gen = generate(run, progress=False)
    assert gen.videos.shape == (2, 3, 13, 32, 32)
    with pytest.raises(ValueError, match="torchrun --nproc_per_node N with N >= 2"):
        train.main(cfg.replace(name="single"))


@pytest.mark.parametrize("pipeline", ["wan", "animatediff"])
def test_gpu_configs_are_matched_pairs_at_the_papers_setting(pipeline):
    vanilla = Config.from_file(GPU_CONFIGS / f"{pipeline}-vanilla.toml")
    tpdiff = Config.from_file(GPU_CONFIGS / f"{pipeline}-tpdiff.toml")
    a, b = vanilla.to_dict(), tpdiff.to_dict()
    assert {k for k in a if a[k] != b[k]} <= set(METHOD_FIELDS)
    assert (vanilla.name, tpdiff.name) == (f"{pipeline}-vanilla", f"{pipeline}-tpdiff")
    assert plan_for(vanilla).num_stages == 1 and plan_for(tpdiff).num_stages == 3
    assert plan_for(vanilla).total_steps == plan_for(tpdiff).total_steps == 30
    variable = {"wan": "${TPDIFF_WAN}", "animatediff": "${TPDIFF_ANIMATEDIFF}"}[pipeline]
    assert tpdiff.pretrained == variable and tpdiff.grad_checkpointing
    frames = [s.frames for s in plan_for(tpdiff).stages]
    assert frames == ([5, 10, 20] if pipeline == "wan" else [4, 8, 16])

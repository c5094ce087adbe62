import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_models import write_video_folder

import harness.pipeline.train as train
from harness.common.config import Config
from harness.common.processes import kill_tree
from harness.pipeline.build import plan_for
from harness.pipeline.sample import cli
from harness.pipeline.sample import main as sample_main

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "size=tiny",
    "frames=8",
    "resolution=32",
    "batch_size=4",
    "num_videos=64",
    "warmup_steps=2",
    "sample_steps=6",
    "num_samples=2",
]


def tiny(tmp_path, *extra) -> Config:
    return Config().override([*TINY, f"out_dir={tmp_path}", *extra])


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "backbone,form", [("dit", "flow"), ("unet", "ddim"), ("dit", "ddim"), ("unet", "flow")]
)
@pytest.mark.parametrize("method", ["vanilla", "tpdiff"])
def test_every_backbone_form_and_method_trains_and_samples(tmp_path, backbone, form, method):
    cfg = tiny(
        tmp_path,
        f"backbone={backbone}",
        f"form={form}",
        f"method={method}",
        "steps=3",
        f"name={backbone}-{form}-{method}",
    )
    run = train.main(cfg)
    rows = _log(run)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    frames = {r["frames"] for r in rows}
    assert frames == {8} if method == "vanilla" else frames <= {2, 4, 8}
    meta = json.loads((run / "config.json").read_text())
    assert meta["config"]["method"] == method and meta["git"]
    macs = {int(f): m for f, m in meta["forward_macs"].items()}
    assert sorted(macs) == sorted({2, 4, 8} if method == "tpdiff" else {8})
    assert all(macs[a] < macs[b] for a, b in zip(sorted(macs), sorted(macs)[1:]))
    totals = [0] + [r["train_flops"] for r in rows]
    assert [b - a for a, b in zip(totals, totals[1:])] == [6 * 4 * macs[r["frames"]] for r in rows]
    out = sample_main(run)
    videos = torch.load(out / "videos.pt")
    assert videos.shape == (2, 1, 8, 32, 32) and torch.isfinite(videos).all()
    assert (out / "grid.png").stat().st_size > 0
    assert len(list(out.glob("*.gif"))) == 2 and len(list(out.glob("*.mp4"))) == 2


def test_crash_and_resume_is_bit_identical(tmp_path, monkeypatch):
    common = ("steps=6", "ckpt_every=2", "ema_decay=0.9")
    straight = train.main(tiny(tmp_path, *common, "name=straight"))
    cfg = tiny(tmp_path, *common, "name=crashy")
    real, calls = train.draw_training_batch, []

    def crash_on_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(train, "draw_training_batch", crash_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        train.main(cfg)
    assert torch.load(cfg.run_dir / "checkpoint.pt", weights_only=False)["step"] == 2
    monkeypatch.setattr(train, "draw_training_batch", real)
    resumed = train.main(cfg)
    assert _same(_weights(straight), _weights(resumed))
    ema_a = torch.load(straight / "checkpoint.pt", weights_only=False)["ema"]
    ema_b = torch.load(resumed / "checkpoint.pt", weights_only=False)["ema"]
    assert _same(ema_a, ema_b)
    strip = lambda rows: [(r["step"], r["stage"], r["loss"], r["train_flops"]) for r in rows]  # noqa: E731
    assert strip(_log(straight)) == strip(_log(resumed))


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, "steps=6", "ckpt_every=2", "name=nan")
    real, calls = train.draw_training_batch, []

    def nan_on_fourth(*args, **kwargs):  # an injected NaN in the 4th batch
        batch = real(*args, **kwargs)
        calls.append(batch.stage)
        if len(calls) == 4:
            return dataclasses.replace(batch, x_u=batch.x_u.clone().fill_(float("nan")))
        return batch

    monkeypatch.setattr(train, "draw_training_batch", nan_on_fourth)
    with pytest.raises(FloatingPointError) as err:
        train.main(cfg)
    message = str(err.value)
    assert f"non-finite loss nan at step 4 (stage {calls[3]}," in message
    assert "last good checkpoint, step 2, is kept" in message and "lr=" in message
    state = torch.load(cfg.run_dir / "checkpoint.pt", weights_only=False)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert [r["step"] for r in _log(cfg.run_dir)] == [1, 2, 3]  # nothing of step 4 was logged
    # the stopped run resumes from that checkpoint once the cause is gone
    monkeypatch.setattr(train, "draw_training_batch", real)
    assert torch.load(train.main(cfg) / "checkpoint.pt", weights_only=False)["step"] == 6


def test_a_non_finite_gradient_is_caught_too(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, "steps=2", "name=inf-grad")
    real_clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda p, c: real_clip(p, c) * float("inf"))  # fmt: skip
    with pytest.raises(FloatingPointError, match="non-finite gradient norm inf at step 1"):
        train.main(cfg)
    assert not (cfg.run_dir / "checkpoint.pt").exists()


def test_snapshots_keep_weights_along_the_run(tmp_path):
    run = train.main(tiny(tmp_path, "steps=4", "snapshot_every=2", "ckpt_every=3", "name=snap"))
    snaps = sorted((run / "snapshots").glob("step_*.pt"))
    assert [p.name for p in snaps] == ["step_000002.pt", "step_000004.pt"]
    last = torch.load(snaps[-1], weights_only=False)
    assert "opt" not in last and _same(last["model"], _weights(run))
    assert last["train_flops"] == _log(run)[-1]["train_flops"]


@pytest.mark.slow
def test_sigkill_and_resume_is_bit_identical(tmp_path):
    args = [*TINY, f"out_dir={tmp_path}", "steps=40", "ckpt_every=5", "backbone=dit"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "harness.train"]
    subprocess.run([*cmd, *args, "name=straight"], check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        [*cmd, *args, "name=killed"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    log = tmp_path / "killed" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 12:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["step"]
    assert 5 <= step < 40, "the kill must land mid-run"
    subprocess.run([*cmd, *args, "name=killed"], check=True, env=env, capture_output=True)
    assert _same(_weights(tmp_path / "straight"), _weights(tmp_path / "killed"))
    assert [r["step"] for r in _log(tmp_path / "killed")] == list(range(1, 41))


def test_resuming_with_a_different_config_changes_nothing(tmp_path):
    run = train.main(tiny(tmp_path, "steps=2", "name=r"))
    before = (run / "checkpoint.pt").read_bytes()
    with pytest.raises(ValueError, match="different config \\(lr: 0.0005 -> 0.1\\)"):
        train.main(tiny(tmp_path, "steps=4", "name=r", "lr=0.1"))
    assert (run / "checkpoint.pt").read_bytes() == before


def test_a_torn_log_line_does_not_block_resume(tmp_path):
    run = train.main(tiny(tmp_path, "steps=2", "name=torn"))
    with (run / "log.jsonl").open("a") as fh:
        fh.write('{"step": 3, "stage": 1, "lo')  # killed mid-write
    train.main(tiny(tmp_path, "steps=4", "name=torn"))
    assert [r["step"] for r in _log(run)] == [1, 2, 3, 4]


def test_a_folder_without_checkpoint_is_not_taken_over_by_another_config(tmp_path):
    run = train.main(tiny(tmp_path, "steps=2", "name=other"))
    (run / "checkpoint.pt").unlink()  # e.g. killed before its first checkpoint
    before = (run / "config.json").read_bytes(), (run / "log.jsonl").read_bytes()
    with pytest.raises(ValueError, match="different config \\(lr: 0.0005 -> 0.1\\)"):
        train.main(tiny(tmp_path, "steps=2", "name=other", "lr=0.1"))
    assert ((run / "config.json").read_bytes(), (run / "log.jsonl").read_bytes()) == before


def test_loss_falls(tmp_path):
    run = train.main(tiny(tmp_path, "steps=40", "lr=2e-3", "method=vanilla", "name=fall"))
    losses = [r["loss"] for r in _log(run)]
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:5]) / 5


def test_video_folder_trains_two_steps(tmp_path):
    root = write_video_folder(tmp_path / "videos")
    with pytest.warns(UserWarning, match="broken.mp4"):
        run = train.main(
            tiny(
                tmp_path,
                "dataset=video-folder",
                f"data_root={root}",
                "channels=3",
                "steps=2",
                "name=folder",
                f"data_cache={tmp_path / 'cache'}",
            )
        )
    assert len(_log(run)) == 2
    assert list((tmp_path / "cache").glob("*.pt"))


def test_two_process_torchrun(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "harness.train",
        *TINY,
        f"out_dir={tmp_path}",
        "steps=3",
        "name=ddp",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "ddp"
    rows = _log(run)
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["samples_seen"] == 12
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    probs = train.stage_probabilities(plan_for(tiny(tmp_path)))
    shared = [int(torch.multinomial(probs, 1, generator=_shared(s))) for s in range(3)]
    assert [r["stage"] for r in rows] == shared
    with pytest.raises(ValueError, match="trained on 2 process\\(es\\) but this resume has 1"):
        train.main(tiny(tmp_path, "steps=5", "name=ddp"))


@contextlib.contextmanager
def _process_group(cmd: list[str], env: dict, **kwargs):
    """`cmd` in its own session, SIGKILLed with everything it started on the way out,
    whatever happened. torchrun starts each worker in a session of its own, out of reach of
    its launcher's group: the workers' groups are killed too, and awaited (a live one still
    holds the run folder)."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        kill_tree(proc.pid)
        proc.wait()


@pytest.mark.slow
@pytest.mark.cuda
def test_torchrun_on_the_device_is_killed_and_resumed(tmp_path, device):
    """torchrun (NCCL on CUDA, gloo on CPU; 2 processes where 2 GPUs are visible): a run
    killed mid-way resumes from its checkpoint and logs every step once."""
    world = 2 if device.type == "cuda" and torch.cuda.device_count() > 1 else 1
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    steps = 120  # the kill lands after 12 steps, well before the end even on a fast GPU
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={world}", "-m", "harness.train", *TINY, f"out_dir={tmp_path}",
           f"steps={steps}", "ckpt_every=5", f"device={device.type}", "name=tr"]  # fmt: skip
    log = tmp_path / "tr" / "log.jsonl"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with _process_group(cmd, env, **quiet) as proc:  # killed on leaving: the launcher and workers
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if log.exists() and len(log.read_text().splitlines()) >= 12:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "finished (or died) before the kill"
    step = torch.load(tmp_path / "tr" / "checkpoint.pt", weights_only=False)["step"]
    assert 5 <= step < steps, "the kill must land mid-run"
    with _process_group(cmd, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True) as proc:  # fmt: skip
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert [r["step"] for r in _log(tmp_path / "tr")] == list(range(1, steps + 1))
    record = json.loads((tmp_path / "tr" / "config.json").read_text())
    assert record["world_size"] == world  # and the process group is joined even at 1
    assert record["backend"] == ("nccl" if device.type == "cuda" else "gloo")


def _shared(step):
    g = train.step_generator(0, step)
    torch.randint(64, (4,), generator=g)  # the batch indices come first
    return g


def test_sampling_uses_the_trained_plan_and_keeps_other_settings(tmp_path, capsys):
    run = train.main(tiny(tmp_path, "steps=1", "name=s", "method=vanilla", "snapshot_every=1"))
    own = sample_main(run)
    meta = json.loads((own / "sampling.json").read_text())
    assert own == run / "samples" / "vanilla-K1-6steps-seed0"
    assert meta["plan"]["steps"] == [6] and meta["step"] == 1
    pyramid = sample_main(run, {"method": "tpdiff", "num_stages": "2", "renoise": "false"})
    assert pyramid.name == "tpdiff-K2-6steps-norenoise-seed0"
    assert json.loads((pyramid / "sampling.json").read_text())["plan"]["steps"] == [3, 3]
    assert (own / "videos.pt").exists(), "another setting must not clobber earlier samples"
    with pytest.raises(ValueError, match="\\['frames'\\] are fixed by the trained run"):
        sample_main(run, {"frames": 16})
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        sample_main(tmp_path / "nowhere")
    snap = sample_main(run, checkpoint="snapshots/step_000001.pt")
    assert snap.name == "vanilla-K1-6steps-seed0-step1"
    assert torch.equal(torch.load(snap / "videos.pt"), torch.load(own / "videos.pt"))
    again = cli(["--run", str(run), "num_samples=1"])
    assert torch.load(again / "videos.pt").shape[0] == 1
    gifs = cli(
        ["--run", str(run), "num_samples=2", "--format", "gif", "--out", str(tmp_path / "g")]
    )
    assert sorted(p.suffix for p in gifs.iterdir() if p.suffix in (".gif", ".mp4", ".png")) == [
        ".gif", ".gif"]  # fmt: skip
    both = cli(["--run", str(run), "--format", "png,mp4", "--out", str(tmp_path / "pm")])
    assert {p.suffix for p in both.iterdir()} >= {".png", ".mp4"}
    assert not list(both.glob("*.gif"))
    with pytest.raises(SystemExit):
        cli(["--run", str(run), "--format", "webm", "--out", str(tmp_path / "w")])
    assert "--format webm: choose one or more of gif, mp4, png" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()  # refused before sampling
    assert not list((run / "samples").glob(".*")), "no temporary folders left behind"
    with pytest.raises(SystemExit):
        cli(["--run", str(run), "lr=0.1"])
    assert "['lr'] are fixed by the trained run" in capsys.readouterr().err


def test_sampling_in_chunks_keeps_each_chunk_of_videos(tmp_path, monkeypatch):
    """Sampling runs in chunks, each from its own generator: the first chunk of a large call
    is exactly a one-chunk call, whatever follows it; vanilla and TPDiff of one run draw the
    same starting noise chunk by chunk."""
    from harness.pipeline import sample as sampling

    run = train.main(tiny(tmp_path, "steps=1", "name=c", "method=tpdiff"))
    monkeypatch.setitem(sampling.SAMPLE_CHUNK, "cpu", 3)
    seven = sampling.generate(run, dict(num_samples=7), progress=False)
    three = sampling.generate(run, dict(num_samples=3), progress=False)
    assert seven.videos.shape[0] == 7 and seven.captions[:3] == three.captions
    assert torch.equal(seven.videos[:3], three.videos)
    assert not torch.equal(seven.videos[3:6], three.videos)  # the next chunk: other noise


def test_a_run_is_not_resumed_on_another_autoencoders_latents(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "trained_codec_hash", lambda cfg: "aaaa")
    run = train.main(tiny(tmp_path, "steps=1", "name=codec"))
    assert torch.load(run / "checkpoint.pt", weights_only=False)["codec"] == "aaaa"
    monkeypatch.setattr(train, "trained_codec_hash", lambda cfg: "bbbb")
    with pytest.raises(ValueError, match="latents of autoencoder weights aaaa.*now bbbb"):
        train.main(tiny(tmp_path, "steps=2", "name=codec"))


def test_tensorboard_mirrors_the_log_when_asked_for(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from harness.pipeline.provenance import training_hash
    from harness.pipeline.tracking import log_scores

    cfg = tiny(tmp_path, "steps=2", "name=tb", "log_with=tensorboard")
    assert training_hash(cfg) == training_hash(cfg.replace(log_with=""))  # execution only
    run = train.main(cfg)
    events = EventAccumulator(str(run / "tb")).Reload()
    loss = events.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in _log(run)])
    assert {"train/lr", "train/stage", "train/flops"} <= set(events.Tags()["scalars"])
    # a snapshot's scores go beside them; scoring it again replaces its points
    log_scores(cfg, run, 2, [(8, {"FVD-md": 1.5, "PA-md-digit": 0.25})])
    log_scores(cfg, run, 2, [(8, {"FVD-md": 2.0, "PA-md-digit": 0.5})])
    scores = EventAccumulator(str(run / "tb" / "eval")).Reload()
    assert [(e.step, e.value) for e in scores.Scalars("eval/FVD-md@n8")] == [(2, 2.0)]
    # a resumed run drops what it had logged past its checkpoint, as log.jsonl is cut back
    again = train.main(cfg.replace(steps=3))
    resumed = EventAccumulator(str(again / "tb")).Reload()
    assert [e.step for e in resumed.Scalars("train/loss")] == [1, 2, 3]


def test_a_restart_drops_the_events_of_a_session_that_never_checkpointed(tmp_path, monkeypatch):
    """A first session logs steps 1-2 to TensorBoard, then dies before any checkpoint; the
    run starts again at step 0 and its events hold each step once, as log.jsonl does."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = tiny(tmp_path, "steps=3", "ckpt_every=100", "name=tbc", "log_with=tensorboard")
    real_save = train.save

    def dies_at_step_2(s, end):
        if s.step == 2:
            raise RuntimeError("killed")
        real_save(s, end)

    monkeypatch.setattr(train, "save", dies_at_step_2)
    with pytest.raises(RuntimeError, match="killed"):
        train.main(cfg)
    assert not (cfg.run_dir / "checkpoint.pt").exists()
    stale = EventAccumulator(str(cfg.run_dir / "tb")).Reload().Scalars("train/loss")
    assert [e.step for e in stale] == [1, 2]  # what the crashed session left
    monkeypatch.setattr(train, "save", real_save)
    run = train.main(cfg)
    loss = EventAccumulator(str(run / "tb")).Reload().Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in _log(run)] == [1, 2, 3]
    assert [e.value for e in loss] == pytest.approx([r["loss"] for r in _log(run)])


def test_the_tracker_is_closed_when_training_fails_to_start(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    opened = []

    def recorded(*args, **kwargs):
        opened.append(train_open_tracker(*args, **kwargs))
        return opened[-1]

    train_open_tracker = train.open_tracker
    monkeypatch.setattr(train, "open_tracker", recorded)
    monkeypatch.setattr(train, "data_loader", lambda s, end: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        train.main(tiny(tmp_path, "steps=2", "name=tbf", "log_with=tensorboard"))
    assert len(opened) == 1 and opened[0].writer.all_writers is None  # closed
    assert opened[0].writer.flush_secs == 10  # written out for a watcher every 10 s


def test_scores_under_two_sampling_settings_keep_their_own_curves(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from harness.pipeline.tracking import log_scores

    cfg = tiny(tmp_path, "name=tbs", "log_with=tensorboard")
    exact, off = "tpdiff-K3-6steps-seed0", "tpdiff-K3-6steps-norenoise-seed0"
    log_scores(cfg, cfg.run_dir, 4, [(8, {"sampling": exact, "FVD-md": 1.5}),
                                     (8, {"sampling": off, "FVD-md": 3.0})])  # fmt: skip
    scores = EventAccumulator(str(cfg.run_dir / "tb" / "eval")).Reload()
    points = {t: [(e.step, e.value) for e in scores.Scalars(t)]
              for t in scores.Tags()["scalars"]}  # fmt: skip
    assert points == {f"eval/FVD-md@n8/{exact}": [(4, 1.5)], f"eval/FVD-md@n8/{off}": [(4, 3.0)]}


def test_tensorboard_without_the_package_is_refused_by_name(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    cfg = tiny(tmp_path, "steps=1", "name=tb", "log_with=tensorboard")
    needs = r'needs the tensorboard package: pip install -e "\.\[tb\]"'
    with pytest.raises(ValueError, match=needs):
        train.main(cfg)
    assert not (cfg.run_dir / "log.jsonl").exists() or not (cfg.run_dir / "log.jsonl").read_text()
    with pytest.raises(ValueError, match="log_with must be one of"):
        tiny(tmp_path, "log_with=wandb")

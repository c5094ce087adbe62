"""Training, one loop for both methods: `python -m harness.train [--config FILE] [key=value ...]`.

method=vanilla trains the ordinary diffusion objective at full frame rate;
method=tpdiff trains stage-wise diffusion over the config's stage plan (each
batch draws one stage; every DDP rank gets the same stage). Everything random
about step s is drawn from generators seeded by (seed, s[, rank]), so a run that
is killed and resumed from its last checkpoint reaches bit-identical weights.

Run folder `<out_dir>/<name>/`: config.json, log.jsonl (one row per step:
step, stage, frames, loss, lr, grad_norm, step_time_s, data_time_s,
wall_time_s, samples_seen, train_flops = cumulative 2 x 3 x forward MACs per
sample, fvcore with attention), checkpoint.pt (latest, written atomically),
snapshots/step_NNNNNN.pt (weights every `snapshot_every` steps, for curves).
Multi-process: `torchrun --nproc_per_node N -m harness.train ...` (gloo on CPU,
NCCL on CUDA); batch_size is the global batch. Each rank aligns data and noise
within its own share of the batch, so an N-rank run is a different (equally
valid) run from a 1-rank one, and a resume must use the same N. Bit-identical
resume holds on CPU; on CUDA some kernels (attention backward, cuBLAS
reductions) are nondeterministic unless torch.use_deterministic_algorithms(True)
is set, so a resumed run matches to rounding rather than bit for bit.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from harness.build import TextConditionedModel, build_data, build_model, resolve_device
from harness.cli import guarded
from harness.config import Config, config_parser, parse_config, resumable_changes
from harness.data import collate
from harness.flops import count_macs
from harness.forms import get_form
from harness.gpu import compile_backbone, full_state, load_optimizer, scalar, shard
from harness.io import write_json, write_text
from harness.pretrained import latent_dataset
from harness.provenance import code_revision
from harness.stagewise import draw_training_batch, stage_probabilities


def learning_rate(cfg: Config, step: int) -> float:
    """Linear warmup over `warmup_steps`, then constant or a cosine decay to 0 at `steps`."""
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    if cfg.lr_schedule == "cosine" and step >= cfg.warmup_steps:
        done = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))
    return cfg.lr * warm


def ema_decay(target: float, step: int) -> float:
    """EMA decay at `step` with the usual warmup, min(target, (1 + step) / (10 + step)):
    a plain 0.999 EMA still holds 0.999^1000 = 37 % of the random init after 1000 steps."""
    return min(target, (1.0 + step) / (10.0 + step))


def step_generator(seed: int, step: int, rank: int = -1, device="cpu") -> torch.Generator:
    """The generator for everything random at `step` (rank -1: shared by all ranks)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) * 4_099 + rank + 1)
    return g


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); under torchrun joins the process group (NCCL on CUDA, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # one GPU per rank, bound before NCCL starts
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier(device: torch.device) -> None:
    if device.type == "cuda":
        dist.barrier(device_ids=[device.index])
    else:
        dist.barrier()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save to a temporary file, then an atomic rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def forward_macs(
    model: TextConditionedModel, frames: list[int], channels: int, size: int
) -> dict[int, int]:
    """Forward MACs of one sample (channels x frame x size x size input: video, or latents
    with pretrained=) at each frame count (fvcore + attention handles)."""
    ids = model.tokenize([""])
    device = next(model.parameters()).device
    out = {}
    with torch.no_grad():  # the trace needs no activations kept (large at GPU scale)
        for f in sorted(set(frames)):
            x = torch.zeros(1, channels, f, size, size, device=device)
            u = torch.full((1,), 0.5, device=device)
            out[f] = count_macs(model, (x, u, ids.to(device))).macs
    return out


def _check_resumable(saved: dict, cfg: Config) -> None:
    now = cfg.to_dict()
    saved = Config().to_dict() | saved  # keys added since the run was made have their defaults
    diff = {
        k: (saved.get(k), v)
        for k, v in now.items()
        if k not in resumable_changes(cfg) and saved.get(k) != v
    }
    if diff:
        lines = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        raise ValueError(
            f"run folder {cfg.run_dir} holds a run with a different config ({lines}); "
            "choose another name=... or move that folder away (nothing was changed)"
        )


def _parse_row(line: str) -> dict | None:
    try:
        row = json.loads(line)
    except json.JSONDecodeError:  # a line torn by a kill mid-write
        return None
    return row if isinstance(row, dict) and "step" in row else None


def _truncate_log(path: Path, step: int) -> None:
    """Keep the log rows up to the checkpoint we resume from; drop later and torn rows."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        row = _parse_row(line)
        if row is not None and row["step"] <= step:
            kept.append(line + "\n")
    write_text(path, "".join(kept))


def _check_run_folder(run_dir: Path, cfg: Config, world: int, state: dict | None) -> None:
    """Refuse to reuse a run folder that belongs to a different run (nothing is touched)."""
    if state is not None:
        _check_resumable(state["config"], cfg)
        saved_world = state.get("world_size", 1)
        if saved_world != world:
            raise ValueError(
                f"run {run_dir} was trained on {saved_world} process(es) but this resume has "
                f"{world}; per-rank noise and batches depend on the world size, so resume with "
                f"torchrun --nproc_per_node {saved_world} or start a new name=..."
            )
    elif (run_dir / "config.json").exists():
        saved = json.loads((run_dir / "config.json").read_text())["config"]
        _check_resumable(saved, cfg)


def _check_finite(
    loss: float, grad_norm: float, step: int, stage: int, frames: int, cfg: Config, saved: int
) -> None:
    """FloatingPointError, before the optimizer step, when the loss or the gradient norm is
    not finite: nothing of this step is applied and the checkpoint on disk stays the last
    good one."""
    if math.isfinite(loss) and math.isfinite(grad_norm):
        return
    what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
    kept = (
        f"the last good checkpoint, step {saved}, is kept in {cfg.run_dir / 'checkpoint.pt'}"
        if saved
        else "no checkpoint had been written yet"
    )
    raise FloatingPointError(
        f"non-finite {what} at step {step} (stage {stage}, {frames} frames) of run "
        f"{cfg.run_dir}; training stopped before the update and {kept}. Lower lr= "
        f"(now {cfg.lr:g}), raise warmup_steps= (now {cfg.warmup_steps}) or check the data"
    )


def main(cfg: Config, stop_at: int | None = None) -> Path:
    """Train (or resume) the run `cfg.run_dir` up to `stop_at` (default: all `cfg.steps`),
    checkpointing where it stops; returns the run folder. Stopping early and resuming later
    is bit-identical to one uninterrupted run."""
    end = cfg.steps if stop_at is None else min(stop_at, cfg.steps)
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    rank, world = _init_distributed(device)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by {world} ranks")
    form = get_form(cfg.form)
    plan = cfg.plan()
    probs = stage_probabilities(plan, cfg.stage_weighting)
    run_dir = cfg.run_dir
    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"

    if cfg.fsdp and world < 2:
        raise ValueError(
            "fsdp=true shards the model over torchrun processes: run under "
            "torchrun --nproc_per_node N with N >= 2, or set fsdp=false"
        )
    if cfg.pretrained:  # the VAE's latents of the videos, encoded once and cached on disk
        barrier = (lambda: _barrier(device)) if world > 1 else (lambda: None)
        dataset = latent_dataset(cfg, lambda: build_data(cfg), device, rank, world, barrier)
    elif cfg.latent_channels:  # tiny autoencoder, trained once and cached; latents in memory
        from harness.autoencoder import EncodedDataset, codec_for

        dataset = EncodedDataset(build_data(cfg), codec_for(cfg, progress=rank == 0))
    else:
        dataset = build_data(cfg)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg).to(device)
    ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema_decay > 0 else None

    start, wall, seen, flops = 0, 0.0, 0, 0
    state = None
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location=device, weights_only=False)
    _check_run_folder(run_dir, cfg, world, state)
    # training cost per step = 3 x forward (backward = 2 x forward), counted once per frame
    # count; a resumed run (same config, checked above) reuses its recorded counts
    saved = run_dir / "config.json"
    recorded = json.loads(saved.read_text()).get("forward_macs", {}) if saved.exists() else {}
    macs = {int(f): m for f, m in recorded.items()}
    if set(macs) != {stage.frames for stage in plan.stages}:
        frames = [stage.frames for stage in plan.stages]
        macs = forward_macs(model, frames, dataset.channels, dataset.size)
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start, wall, seen = state["step"], state["wall_time_s"], state["samples_seen"]
        flops = state["train_flops"]
    compile_backbone(model.backbone, cfg.compile)  # after the MAC count: fvcore traces eager
    if cfg.fsdp:
        shard(model, device)  # parameters become DTensor shards; the optimizer comes after
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if state is not None:
        load_optimizer(model, opt, state["opt"], cfg.fsdp)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(
            run_dir / "config.json",
            {
                "config": cfg.to_dict(),
                "git": code_revision(),
                "plan": plan.to_dict(),
                "world_size": world,
                "forward_macs": {str(f): m for f, m in macs.items()},
            },
        )
        _truncate_log(log_path, start)
    if start >= end:
        return run_dir

    device_ids = [device.index] if device.type == "cuda" else None
    ddp = world > 1 and not cfg.fsdp
    net = DistributedDataParallel(model, device_ids=device_ids) if ddp else model
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    local = cfg.batch_size // world
    log = log_path.open("a") if rank == 0 else None
    bar = tqdm(range(start, end), initial=start, total=end, desc=cfg.name, disable=rank != 0)
    model.train()
    saved_step = start  # the step of the checkpoint on disk (0: none yet)
    try:
        for step in bar:
            # ---- data (outside the timed region)
            t_data = time.perf_counter()
            shared = step_generator(cfg.seed, step)
            index = torch.randint(len(dataset), (cfg.batch_size,), generator=shared)
            stage = int(torch.multinomial(probs, 1, generator=shared))
            items = collate([dataset[int(i)] for i in index[rank * local : (rank + 1) * local]])
            x0 = items["video"].to(device, non_blocking=True)
            captions = items["caption"]
            if cfg.cond_dropout > 0:  # unconditional examples for classifier-free guidance
                drop = torch.rand(cfg.batch_size, generator=shared)[
                    rank * local : (rank + 1) * local
                ]
                captions = ["" if d < cfg.cond_dropout else c for d, c in zip(drop, captions)]
            ids = model.tokenize(captions).to(device)
            data_time = time.perf_counter() - t_data

            # ---- compute (timed)
            _sync(device)
            t0 = time.perf_counter()
            g = step_generator(cfg.seed, step, rank, device)
            batch = draw_training_batch(form, plan, x0, generator=g, align=cfg.align, stage=stage)
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            with torch.autocast(**autocast):
                pred = net(batch.x_u, batch.u, ids)
            loss = F.mse_loss(pred.float(), batch.target.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            loss_value = loss.detach()
            if world > 1:  # every rank sees the same mean loss (and the same reduced gradients)
                dist.all_reduce(loss_value)
                loss_value /= world
            _check_finite(float(loss_value), scalar(grad_norm), step + 1, stage, batch.frames, cfg,
                          saved_step)  # fmt: skip
            opt.step()
            if ema is not None:
                decay = ema_decay(cfg.ema_decay, step)
                with torch.no_grad():
                    for pe, pm in zip(ema.parameters(), model.parameters()):
                        pe.lerp_(pm, 1.0 - decay)
            _sync(device)
            step_time = time.perf_counter() - t0
            wall += step_time
            seen += cfg.batch_size
            flops += 2 * 3 * cfg.batch_size * macs[batch.frames]

            # ---- logging and checkpoints (outside the timed region)
            if log is not None:
                row = dict(
                    step=step + 1,
                    stage=stage,
                    frames=batch.frames,
                    loss=float(loss_value),
                    lr=opt.param_groups[0]["lr"],
                    grad_norm=scalar(grad_norm),
                    step_time_s=step_time,
                    data_time_s=data_time,
                    wall_time_s=wall,
                    samples_seen=seen,
                    train_flops=flops,
                )
                log.write(json.dumps(row) + "\n")
                log.flush()
                bar.set_postfix(loss=f"{row['loss']:.4f}", stage=stage)
            done = step + 1
            snapshot = cfg.snapshot_every and done % cfg.snapshot_every == 0
            checkpoint = done % cfg.ckpt_every == 0 or done == end
            if (rank == 0 or cfg.fsdp) and (snapshot or checkpoint):  # FSDP: a collective gather
                weights, optim = full_state(model, opt if checkpoint else None, cfg.fsdp)
            if rank == 0 and (snapshot or checkpoint):
                state = dict(
                    model=weights,
                    ema=ema.state_dict() if ema is not None else None,
                    step=done,
                    wall_time_s=wall,
                    samples_seen=seen,
                    train_flops=flops,
                    world_size=world,
                    config=cfg.to_dict(),
                    git=code_revision(),
                    plan=plan.to_dict(),
                )
                if snapshot:  # weights only, for quality-vs-cost curves
                    save_checkpoint(run_dir / "snapshots" / f"step_{done:06d}.pt", state)
                if checkpoint:
                    save_checkpoint(ckpt_path, state | dict(opt=optim))
            if checkpoint:
                saved_step = done
    finally:  # also when a non-finite loss stops the run
        bar.close()
        if log is not None:
            log.close()
    if world > 1:
        _barrier(device)
    return run_dir


def cli(argv: list[str] | None = None) -> Path:
    """The command line: `[--config FILE] [key=value ...] [--debug]`."""
    prog = "python -m harness.train"
    parser = config_parser(prog, "Train a vanilla or TPDiff video diffusion model.")
    args = parser.parse_intermixed_args(argv)  # options may follow the key=value overrides
    try:
        run = guarded(prog, args.debug, lambda: main(parse_config(args)))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    print(run)
    return run


if __name__ == "__main__":
    cli()
    sys.exit(0)

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

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import torch
import torch.distributed as dist
import torch.nn.functional as F
from diffusers.training_utils import EMAModel
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from tqdm.auto import tqdm

from harness.common.cli import guarded
from harness.common.config import Config, config_parser
from harness.common.environment import environment
from harness.common.io import write_json
from harness.common.lock import owned
from harness.data import collate
from harness.engine.stagewise import draw_training_batch, stage_probabilities
from harness.measure.flops import count_macs
from harness.models.codec import trained_codec_hash
from harness.models.execution import compile_backbone, full_state, load_optimizer, scalar, shard
from harness.pipeline.build import Built, TextConditionedModel, build, parse_config, resolve_device
from harness.pipeline.provenance import code_revision
from harness.pipeline.runfolder import (
    check_run_folder,
    read_checkpoint,
    save_checkpoint,
    truncate_log,
)
from harness.pipeline.tracking import open_tracker
from harness.pipeline.tracking import require as require_tracker


def learning_rate(cfg: Config, step: int) -> float:
    """Linear warmup over `warmup_steps`, then constant or a cosine decay to 0 at `steps`."""
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    if cfg.lr_schedule == "cosine" and step >= cfg.warmup_steps:
        done = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))
    return cfg.lr * warm


def step_generator(seed: int, step: int, rank: int = -1, device="cpu") -> torch.Generator:
    """The generator for everything random at `step` (rank -1: shared by all ranks)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) * 4_099 + rank + 1)
    return g


@dataclass
class Session:
    """One rank's view of a run being trained: the built run, the (wrapped) network, the
    optimiser and EMA, the forward MACs per frame count and the counters a checkpoint
    carries forward."""

    built: Built
    device: torch.device
    rank: int
    world: int
    net: torch.nn.Module  # the model, wrapped in DDP when world > 1 (FSDP shards in place)
    opt: torch.optim.Optimizer
    ema: EMAModel | None
    macs: dict[int, int]  # forward MACs of one sample per frame count
    stage_probs: torch.Tensor  # (K,) the stage distribution of training
    step: int = 0
    wall_time_s: float = 0.0
    samples_seen: int = 0
    train_flops: int = 0
    saved_step: int = 0  # the step of the checkpoint on disk (0: none yet)
    params: list[torch.nn.Parameter] = field(default_factory=list)
    codec: str | None = None  # hash of the trained autoencoder the data is encoded with

    @property
    def cfg(self) -> Config:
        return self.built.cfg

    @property
    def model(self) -> TextConditionedModel:
        return self.built.model


@dataclass(frozen=True)
class Batch:
    """One rank's share of a step's batch, drawn outside the timed region."""

    stage: int
    x0: torch.Tensor  # (b, C, F, H, W) data in the backbone's space
    ids: torch.Tensor  # (b, L) token ids, or (b, L, D) frozen-encoder embeddings
    data_time_s: float


@dataclass(frozen=True)
class StepResult:
    stage: int
    frames: int
    loss: float
    lr: float
    grad_norm: float
    step_time_s: float


# ----------------------------------------------------------------------------- setup


def setup_distributed(cfg: Config) -> tuple[torch.device, int, int]:
    """(device, rank, world size); under torchrun joins the process group (NCCL on CUDA,
    else gloo), at any world size, one process included, and checks that the batch and
    FSDP fit the world size."""
    device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launched = "TORCHELASTIC_RUN_ID" in os.environ  # torchrun sets it for every worker
    if (world > 1 or launched) and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # one GPU per rank, bound before NCCL starts
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} must be divisible by {world} ranks")
    if cfg.fsdp and world < 2:
        raise ValueError(
            "fsdp=true shards the model over torchrun processes: run under "
            "torchrun --nproc_per_node N with N >= 2, or set fsdp=false"
        )
    return device, rank, world


def barrier(device: torch.device) -> None:
    if device.type == "cuda":
        dist.barrier(device_ids=[device.index])
    else:
        dist.barrier()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_macs(
    model: TextConditionedModel, frames: list[int], channels: int, size: int
) -> dict[int, int]:
    """Forward MACs of one sample (channels x frame x size x size input: video, or latents
    with a latent codec) at each frame count (fvcore + attention handles)."""
    ids = model.tokenize([""])
    device = next(model.parameters()).device
    out = {}
    with torch.no_grad():  # the trace needs no activations kept (large at GPU scale)
        for f in sorted(set(frames)):
            x = torch.zeros(1, channels, f, size, size, device=device)
            u = torch.full((1,), 0.5, device=device)
            out[f] = count_macs(model, (x, u, ids.to(device))).macs
    return out


def recorded_macs(built: Built) -> dict[int, int]:
    """The forward MACs the run folder recorded (a resumed run reuses them), else counted
    now, once per stage frame count."""
    saved = built.cfg.run_dir / "config.json"
    recorded = json.loads(saved.read_text()).get("forward_macs", {}) if saved.exists() else {}
    macs = {int(f): m for f, m in recorded.items()}
    frames = [stage.frames for stage in built.plan.stages]
    if set(macs) != set(frames):
        macs = forward_macs(built.model, frames, built.dataset.channels, built.dataset.size)
    return macs


def resume_or_start(cfg: Config, device: torch.device, rank: int, world: int) -> Session:
    """Build the run, then pick it up from `<run>/checkpoint.pt` when there is one (after
    checking that the folder holds this run); otherwise start at step 0. Rank 0 writes
    config.json and cuts log.jsonl back to the checkpoint's step."""
    sync = (lambda: barrier(device)) if world > 1 else (lambda: None)
    built = build(cfg, device, rank=rank, world=world, barrier=sync)
    model = built.model
    ckpt = cfg.run_dir / "checkpoint.pt"
    state = read_checkpoint(ckpt, map_location=device) if ckpt.exists() else None
    check_run_folder(cfg.run_dir, cfg, world, state)
    codec = trained_codec_hash(cfg)  # the autoencoder the data is encoded with, if any
    if state is not None and state.get("codec", codec) != codec:
        raise ValueError(
            f"{ckpt} was trained on the latents of autoencoder weights {state['codec']}, but "
            f"{cfg.name}'s autoencoder is now {codec} (weights/ or the cache changed): train "
            "into a new folder (another name= or out_dir=) or restore the old weights"
        )
    macs = recorded_macs(built)  # before compile: fvcore traces the eager model
    ema = EMAModel(model.parameters(), decay=cfg.ema_decay, foreach=True) if cfg.ema_decay else None
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            load_ema(ema, model, state)
    compile_backbone(model.backbone, cfg.compile)
    if cfg.fsdp:
        shard(model, device)  # parameters become DTensor shards; the optimizer comes after
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if state is not None:
        load_optimizer(model, opt, state["opt"], cfg.fsdp)
    ddp = world > 1 and not cfg.fsdp
    device_ids = [device.index] if device.type == "cuda" else None
    net = DistributedDataParallel(model, device_ids=device_ids) if ddp else model
    probs = stage_probabilities(built.plan, cfg.stage_weighting)
    session = Session(
        built, device, rank, world, net, opt, ema, macs, probs, params=params, codec=codec
    )
    if state is not None:
        session.step = session.saved_step = state["step"]
        session.wall_time_s, session.samples_seen = state["wall_time_s"], state["samples_seen"]
        session.train_flops = state["train_flops"]
    if rank == 0:
        macs_by_frames = {str(f): m for f, m in macs.items()}
        record = dict(config=cfg.to_dict(), git=code_revision(), plan=built.plan.to_dict(),
                      world_size=world, forward_macs=macs_by_frames,
                      backend=dist.get_backend() if dist.is_initialized() else None,
                      environment=environment())  # fmt: skip
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(cfg.run_dir / "config.json", record)
        missing = truncate_log(cfg.run_dir / "log.jsonl", session.step)
        if missing:
            print(f"warning: {cfg.run_dir / 'log.jsonl'} lacks {len(missing)} of the "
                  f"{session.step} steps before the checkpoint (first {missing[0]}); its "
                  "curves will have a gap", file=sys.stderr)  # fmt: skip
    return session


def ema_weights(ema: EMAModel, model: torch.nn.Module) -> dict:
    """The model's state dict with the EMA's averaged parameters in place of its own."""
    names = [name for name, _ in model.named_parameters()]
    return model.state_dict() | {n: s.detach().clone() for n, s in zip(names, ema.shadow_params)}


def load_ema(ema: EMAModel, model: torch.nn.Module, state: dict) -> None:
    """Restore the EMA from a checkpoint's averaged weights and step (bit-identical resume)."""
    weights = state["ema"]
    for (name, _), shadow in zip(model.named_parameters(), ema.shadow_params):
        shadow.copy_(weights[name])
    ema.optimization_step = state["step"]


# ----------------------------------------------------------------------------- the loop


class StepIndices(Sampler[list[int]]):
    """This rank's dataset indices for each of steps `start`..`end`-1: step s draws
    `batch_size` indices from the generator of (seed, s) and rank r takes the r-th slice,
    so every rank, every worker count and every resume sees the same batches."""

    def __init__(self, size: int, cfg: Config, rank: int, world: int, start: int, end: int):
        self.size, self.cfg, self.start, self.end = size, cfg, start, end
        local = cfg.batch_size // world
        self.mine = slice(rank * local, (rank + 1) * local)

    def __len__(self) -> int:
        return self.end - self.start

    def __iter__(self):
        for step in range(self.start, self.end):
            shared = step_generator(self.cfg.seed, step)
            index = torch.randint(self.size, (self.cfg.batch_size,), generator=shared)
            yield index[self.mine].tolist()


def data_loader(s: Session, end: int) -> DataLoader:
    """The rank's batches of the remaining steps, read by `data_workers` processes (0: in
    this process), pinned for the copy to a GPU."""
    cfg, dataset = s.cfg, s.built.dataset
    steps = StepIndices(len(dataset), cfg, s.rank, s.world, s.step, end)
    return DataLoader(dataset, batch_sampler=steps, num_workers=cfg.data_workers,
                      collate_fn=collate, pin_memory=s.device.type == "cuda")  # fmt: skip


def draw_batch(s: Session, step: int, items: dict, waited_s: float) -> Batch:
    """Step `step`'s stage and caption dropout, from the generator of (seed, step) after the
    draw of the batch's indices (StepIndices): the same on every rank and after a resume;
    `items` (the loader's batch) moved to the device and its captions tokenized."""
    t0 = time.perf_counter()
    cfg = s.cfg
    local = cfg.batch_size // s.world
    mine = slice(s.rank * local, (s.rank + 1) * local)
    shared = step_generator(cfg.seed, step)
    torch.randint(len(s.built.dataset), (cfg.batch_size,), generator=shared)  # the indices
    stage = int(torch.multinomial(s.stage_probs, 1, generator=shared))
    captions = items["caption"]
    if cfg.cond_dropout > 0:  # unconditional examples for classifier-free guidance
        drop = torch.rand(cfg.batch_size, generator=shared)[mine]
        captions = ["" if d < cfg.cond_dropout else c for d, c in zip(drop, captions)]
    x0 = items["video"].to(s.device, non_blocking=True)
    ids = s.model.tokenize(captions).to(s.device)
    return Batch(stage, x0, ids, waited_s + time.perf_counter() - t0)


def train_step(s: Session, step: int, batch: Batch) -> StepResult:
    """One optimiser step on `batch` (timed, between device synchronizations): stage-wise
    noising with aligned noise, the loss, backward, clipping, a finite check, the update, the
    EMA. Also the loop's counters: wall time, samples seen, training FLOPs."""
    cfg, device = s.cfg, s.device
    synchronize(device)
    t0 = time.perf_counter()
    g = step_generator(cfg.seed, step, s.rank, device)
    noised = draw_training_batch(s.built.form, s.built.plan, batch.x0, generator=g,
                                 align=cfg.align, stage=batch.stage)  # fmt: skip
    lr = learning_rate(cfg, step)
    for group in s.opt.param_groups:
        group["lr"] = lr
    autocast = device.type == "cuda"  # bf16 on GPUs; float32 on CPU
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
        pred = s.net(noised.x_u, noised.u, batch.ids)
    loss = F.mse_loss(pred.float(), noised.target.float())
    s.opt.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = scalar(torch.nn.utils.clip_grad_norm_(s.params, cfg.grad_clip))
    loss_value = loss.detach()
    if s.world > 1:  # every rank sees the same mean loss (and the same reduced gradients)
        dist.all_reduce(loss_value)
        loss_value /= s.world
    check_finite(float(loss_value), grad_norm, step + 1, batch.stage, noised.frames, cfg,
                 s.saved_step)  # fmt: skip
    s.opt.step()
    if s.ema is not None:
        s.ema.step(s.model.parameters())
    synchronize(device)
    step_time = time.perf_counter() - t0
    s.step = step + 1
    s.wall_time_s += step_time
    s.samples_seen += cfg.batch_size
    s.train_flops += 2 * 3 * cfg.batch_size * s.macs[noised.frames]  # backward = 2 x forward
    return StepResult(batch.stage, noised.frames, float(loss_value), lr, grad_norm, step_time)


def log_step(s: Session, log: IO[str] | None, result: StepResult, data_time_s: float) -> dict:
    """Append the step's row to log.jsonl (rank 0) and return it."""
    row = dict(
        step=s.step,
        stage=result.stage,
        frames=result.frames,
        loss=result.loss,
        lr=result.lr,
        grad_norm=result.grad_norm,
        step_time_s=result.step_time_s,
        data_time_s=data_time_s,
        wall_time_s=s.wall_time_s,
        samples_seen=s.samples_seen,
        train_flops=s.train_flops,
    )
    if log is not None:
        log.write(json.dumps(row) + "\n")
        log.flush()
    return row


def save(s: Session, end: int) -> None:
    """Snapshot (weights, every `snapshot_every` steps) and checkpoint (weights, EMA and
    optimiser, every `ckpt_every` steps and at `end`), written atomically by rank 0; under
    FSDP every rank joins the gather."""
    cfg, done = s.cfg, s.step
    snapshot = cfg.snapshot_every and done % cfg.snapshot_every == 0
    checkpoint = done % cfg.ckpt_every == 0 or done == end
    if not (snapshot or checkpoint) or not (s.rank == 0 or cfg.fsdp):
        return
    weights, optim = full_state(s.model, s.opt if checkpoint else None, cfg.fsdp)
    if s.rank == 0:
        state = dict(
            model=weights,
            ema=ema_weights(s.ema, s.model) if s.ema is not None else None,
            step=done,
            wall_time_s=s.wall_time_s,
            samples_seen=s.samples_seen,
            train_flops=s.train_flops,
            world_size=s.world,
            config=cfg.to_dict(),
            git=code_revision(),
            environment=environment(),
            codec=s.codec,  # the trained autoencoder's hash (None: pixels or a pretrained VAE)
            plan=s.built.plan.to_dict(),
        )
        if snapshot:  # weights only, for quality-vs-cost curves
            save_checkpoint(cfg.run_dir / "snapshots" / f"step_{done:06d}.pt", state)
        if checkpoint:
            save_checkpoint(cfg.run_dir / "checkpoint.pt", state | dict(opt=optim))
    if checkpoint:
        s.saved_step = done


def check_finite(
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
    require_tracker(cfg)  # a missing tracker is refused before anything is built
    device, rank, world = setup_distributed(cfg)
    # one job writes a run folder; its torchrun ranks share rank 0's hold (harness.common.lock)
    with owned(cfg.run_dir, "training run") if rank == 0 else nullcontext():
        return train_loop(cfg, end, device, rank, world)


def train_loop(cfg: Config, end: int, device: torch.device, rank: int, world: int) -> Path:
    """The loop of `main`, on a run folder this job holds: resume or start, then steps
    until `end`, logging and checkpointing."""
    s = resume_or_start(cfg, device, rank, world)
    if s.step >= end:
        return cfg.run_dir
    tracker = log = None
    bar = tqdm(range(s.step, end), initial=s.step, total=end, desc=cfg.name, disable=rank != 0)
    try:  # what is opened here is closed in `finally`, whatever fails after it
        tracker = open_tracker(cfg, cfg.run_dir, rank, resumed_at=s.step)
        log = (cfg.run_dir / "log.jsonl").open("a") if rank == 0 else None
        s.model.train()
        batches = iter(data_loader(s, end))
        for step in bar:
            t0 = time.perf_counter()  # data, outside the timed region
            batch = draw_batch(s, step, next(batches), time.perf_counter() - t0)
            result = train_step(s, step, batch)
            row = log_step(s, log, result, batch.data_time_s)
            if tracker is not None:
                tracker.train_step(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", stage=row["stage"])
            save(s, end)
    finally:  # also when a non-finite loss stops the run
        bar.close()
        if log is not None:
            log.close()
        if tracker is not None:
            tracker.close()
    if world > 1:
        barrier(device)
    return cfg.run_dir


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

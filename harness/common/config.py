"""One frozen config for training and sampling. Defaults are the CPU reference recipe.

Overrides are `key=value` strings (CLI) or dicts (code, TOML files in
`baselines/`); each value is parsed and checked against the field's type, and
an unknown key fails with the list of valid ones. The resolved config goes into
every checkpoint and run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from harness.engine.forms import get_form
from harness.engine.pyramid import renoise_rule
from harness.engine.stagewise import STAGE_WEIGHTINGS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

METHODS = ("vanilla", "tpdiff")
LR_SCHEDULES = ("constant", "cosine")

# the only fields in which a matched vanilla / TPDiff pair may differ
METHOD_FIELDS = (
    "name",
    "method",
    "num_stages",
    "jump_points",
    "stage_steps",
    "upsample",
    "align",
    "renoise",
    "stage_weighting",
)

LOG_WITH = ("", "tensorboard")  # where live curves go besides log.jsonl

# config keys that may change between a run and its resumption: they never change what
# training computes (steps only sets where it stops; the rest is execution and output)
RESUMABLE_CHANGES = (
    "steps",
    "ckpt_every",
    "snapshot_every",
    "device",
    "out_dir",
    "num_samples",
    # execution only (latents are keyed by content, not location)
    "latent_cache",
    "encode_batch",
    "data_workers",
    "attention",
    "grad_checkpointing",
    "compile",
    "log_with",
)


def resumable_changes(cfg: Config) -> tuple[str, ...]:
    """RESUMABLE_CHANGES for `cfg`: with a cosine schedule the lr at every step depends on
    `steps`, so `steps` is part of what training computes and may not change."""
    if cfg.lr_schedule == "cosine":
        return tuple(k for k in RESUMABLE_CHANGES if k != "steps")
    return RESUMABLE_CHANGES


# the fields that define the videos of a dataset (and so its real reference sets)
DATA_FIELDS = (
    "dataset",
    "data_root",
    "num_videos",
    "frames",
    "resolution",
    "channels",
    "frame_stride",
    "seed",
    "max_digits",
    "digit_size",
)

# execution options (harness.models.execution): diffusers attention backends, torch.compile
ATTENTION_BACKENDS = (
    "native",
    "_native_flash",
    "_native_efficient",
    "_native_cudnn",
    "_native_math",
    "flash",
    "flash_varlen",
    "_flash_3",
    "sage",
    "xformers",
)
COMPILE_BACKENDS = ("off", "inductor", "aot_eager", "eager")


@dataclass(frozen=True)
class Config:
    # run
    name: str = "dit-flow-tpdiff"
    out_dir: str = "runs"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    # method (the only differences inside a matched pair)
    method: str = "tpdiff"  # vanilla | tpdiff
    num_stages: int = 3
    jump_points: tuple[float, ...] = ()  # empty: uniform, u = 1 - k/K
    stage_steps: tuple[int, ...] = ()  # sampling steps per stage; empty: sample_steps split evenly
    upsample: str = "nearest"
    align: bool = True
    renoise: str = "exact"  # exact | off | pyramid-flow (true / false: exact / off)
    stage_weighting: str = "length"
    # model
    backbone: str = "dit"
    size: str = "small"
    form: str = "flow"
    text_encoder: str = "learned"  # learned | local folder of a transformers CLIP/T5 encoder
    text_dim: int = 64
    text_len: int = 12
    # data
    dataset: str = "moving-digits"
    data_root: str = ""
    data_cache: str = ""  # prepared video folders (python -m harness.prepare) and clip caches
    data_workers: int = 0  # DataLoader worker processes in training (0: the main process)
    num_videos: int = 4096
    frames: int = 16
    resolution: int = 32
    channels: int = 1
    frame_stride: int = 1
    max_digits: int = 2  # moving-digits: 1..max_digits digits per clip
    digit_size: int = 12  # moving-digits: digit side in pixels (sklearn digits are 8x8)
    # tiny per-frame autoencoder (harness.models.autoencoder): 0 = pixel space; C > 0 = latent
    # diffusion on (C, F, H / 2^latent_down, W / 2^latent_down) latents, AE trained once
    latent_channels: int = 0
    latent_down: int = 2
    # optimisation
    steps: int = 300
    batch_size: int = 8  # global batch, split over DDP ranks
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 20
    lr_schedule: str = "constant"  # constant | cosine (after warmup, decays to 0 at `steps`)
    grad_clip: float = 1.0
    ema_decay: float = 0.0  # 0 disables EMA
    cond_dropout: float = 0.0  # fraction of training captions replaced by "" (for guidance)
    # logging, checkpoints, sampling
    ckpt_every: int = 50
    snapshot_every: int = 0  # keep weights every N steps in snapshots/ (0: off), for curves
    sample_steps: int = 30
    guidance: float = 1.0  # classifier-free guidance scale at sampling (1: off; needs cond_dropout)
    num_samples: int = 8
    # pretrained pipelines and GPU execution (docs/gpu.md)
    pretrained: str = ""  # local diffusers pipeline folder, $VAR expanded; "" = random init
    latent_cache: str = ""  # folder for encoded latents; "" = <out_dir>/latents
    encode_batch: int = 4  # videos per VAE call (encoding the data, decoding samples)
    attention: str = "native"  # diffusers attention backend (dit); native = torch SDPA
    grad_checkpointing: bool = False
    compile: str = "off"  # off | inductor | aot_eager | eager (torch.compile backend)
    fsdp: bool = False  # FSDP2 instead of DDP under torchrun
    # also write live curves for a watcher: "" (log.jsonl only) | tensorboard (<run>/tb/,
    # `pip install -e ".[tb]"`); log.jsonl stays the record
    log_with: str = ""

    def __post_init__(self):
        check_name(self.name)
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.log_with not in LOG_WITH:
            raise ValueError(f"log_with must be one of {LOG_WITH}, got {self.log_with!r}")
        get_form(self.form)
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {self.device!r}")
        positive = (
            "steps",
            "batch_size",
            "frames",
            "resolution",
            "channels",
            "sample_steps",
            "num_stages",
            "ckpt_every",
            "num_samples",
            "encode_batch",
            "max_digits",
            "digit_size",
        )
        for key in positive:
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("lr", "weight_decay", "grad_clip", "ema_decay"):
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got {value}")
        if self.lr == 0 or self.ema_decay >= 1:
            raise ValueError(
                f"lr must be > 0 (got {self.lr}) and ema_decay < 1 (got {self.ema_decay})"
            )
        if not 0.0 <= self.cond_dropout < 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1), got {self.cond_dropout}")
        if self.data_workers < 0:
            raise ValueError(
                f"data_workers must be >= 0 (0: no worker processes), got {self.data_workers}"
            )
        if self.snapshot_every < 0:
            raise ValueError(
                f"snapshot_every must be >= 0 (0 turns snapshots off), got {self.snapshot_every}"
            )
        if self.jump_points and len(self.jump_points) != self.num_stages - 1:
            raise ValueError(
                f"jump_points={list(self.jump_points)} has {len(self.jump_points)} entries but "
                f"num_stages={self.num_stages} needs {self.num_stages - 1} (or leave it empty "
                "for the uniform split)"
            )
        object.__setattr__(self, "renoise", renoise_rule(self.renoise))  # names a bool flag
        if self.renoise == "pyramid-flow" and self.upsample != "nearest":
            raise ValueError(
                "renoise=pyramid-flow blends pairs of repeated frames and needs "
                f"upsample=nearest (got {self.upsample!r}); use renoise=exact with it"
            )
        if self.stage_weighting not in STAGE_WEIGHTINGS:
            raise ValueError(
                f"stage_weighting must be one of {STAGE_WEIGHTINGS}, got {self.stage_weighting!r}"
            )
        if self.stage_steps and len(self.stage_steps) != self.num_stages:
            raise ValueError(
                f"stage_steps={list(self.stage_steps)} has {len(self.stage_steps)} entries but "
                f"num_stages={self.num_stages} needs one per stage (or leave it empty to split "
                "sample_steps evenly)"
            )
        self._check_execution()
        if self.latent_channels < 0 or self.latent_down < 1:
            raise ValueError(
                f"latent_channels must be >= 0 (0: pixel space) and latent_down >= 1, got "
                f"{self.latent_channels} and {self.latent_down}"
            )

    def _check_execution(self) -> None:
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(
                f"attention must be one of {ATTENTION_BACKENDS}, got {self.attention!r}"
            )
        if self.compile not in COMPILE_BACKENDS:
            raise ValueError(f"compile must be one of {COMPILE_BACKENDS}, got {self.compile!r}")
        if self.fsdp and self.ema_decay > 0:
            raise ValueError(
                "ema_decay > 0 keeps a full copy of the model on every process, which fsdp=true "
                "is there to avoid; set ema_decay=0 or fsdp=false"
            )

    # ------------------------------------------------------------------ derived

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: (list(v) if isinstance(v, tuple) else v)
            for f in fields(self)
            for v in [getattr(self, f.name)]
        }

    def to_toml(self, comment: str = "") -> str:
        """This config as TOML (every key), which `Config.from_file` reads back equal."""
        lines = [f"# {line}" for line in comment.splitlines()]
        lines += [f"{k} = {_toml_value(v)}" for k, v in self.to_dict().items()]
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ overrides

    def replace(self, **changes: Any) -> Config:
        """A copy with `changes` applied; values are type-checked, unknown keys rejected."""
        hints = typing.get_type_hints(Config)
        valid = [f.name for f in fields(self)]
        parsed = {}
        for key, value in changes.items():
            if key not in hints:
                raise ValueError(f"unknown config key {key!r}; valid keys: {', '.join(valid)}")
            if key == "renoise":  # the named rule; true / false from older configs still read
                value = renoise_rule(value)
            parsed[key] = _coerce(key, value, hints[key])
        return dataclasses.replace(self, **parsed)

    def override(self, items: list[str]) -> Config:
        """Apply CLI overrides like ["steps=200", "jump_points=0.7,0.4", "align=false"]."""
        changes = {}
        for item in items:
            if "=" not in item:
                raise ValueError(f"override {item!r} is not key=value (e.g. steps=200)")
            key, value = item.split("=", 1)
            changes[key.strip()] = value.strip()
        return self.replace(**changes)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Config:
        return cls().replace(**d)

    @classmethod
    def from_file(cls, path: str | Path) -> Config:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found (see baselines/ for examples)")
        try:
            table = tomllib.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError(
                f"config file {path} is not UTF-8 text (byte {err.start}); save it as UTF-8"
            ) from None
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"config file {path} is not valid TOML: {err}; fix it") from None
        if not table:
            raise ValueError(
                f"config file {path} sets no key, so it would train the defaults; give it "
                "the keys to change (see baselines/ for examples), or leave out --config"
            )
        try:
            return cls.from_dict(table)
        except ValueError as err:
            raise ValueError(f"config file {path}: {err}") from None


def check_name(name: str) -> None:
    """A run name is one path component: the run folder is `<out_dir>/<name>`."""
    bad = not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name
    if bad or Path(name).name != name:
        raise ValueError(
            f"name must be a single folder name (the run goes to <out_dir>/<name>), got "
            f"{name!r}; use e.g. name=dit-tpdiff, and out_dir=... to choose the parent folder"
        )


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def config_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of `[--config FILE] [key=value ...] [--debug]` (python -m harness.train)."""
    from harness.common.cli import add_debug_flag

    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog="Overrides are key=value, e.g. method=vanilla steps=200 jump_points=0.7,0.4. "
        "Valid keys: " + ", ".join(Config().to_dict()),
    )
    parser.add_argument("--config", type=Path, help="TOML config, e.g. baselines/dit-tpdiff.toml")
    parser.add_argument("overrides", nargs="*", help="key=value overrides")
    add_debug_flag(parser)
    return parser


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Parse/check `value` for a field annotated `hint` (str, int, float, bool, tuple[T, ...])."""
    origin = typing.get_origin(hint)
    original = value
    try:
        if origin is tuple:
            (item, _) = typing.get_args(hint)
            if isinstance(value, str):
                value = [v for v in value.replace(" ", "").split(",") if v]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(_coerce(key, v, item) for v in value)
        if hint is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise TypeError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if hint is str:
            if not isinstance(value, str):
                raise TypeError
            return value
    except (TypeError, ValueError):
        pass
    else:
        raise TypeError(f"unsupported config type {hint} for {key}")
    if origin is tuple:
        name = f"comma-separated {typing.get_args(hint)[0].__name__} values"
    else:
        name = getattr(hint, "__name__", str(hint))
    raise ValueError(f"config key {key!r} expects {name}, got {original!r}")

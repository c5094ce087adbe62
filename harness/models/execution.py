"""Execution options for a diffusers backbone: attention backend, gradient checkpointing,
torch.compile, FSDP. They change how a step runs, not what it computes (up to rounding).

- `attention`: a diffusers attention-dispatcher backend for models that use the
  dispatcher (Wan). "native" is torch SDPA, which on CUDA already picks the flash or
  memory-efficient kernel; the UNet's attention processors always call torch SDPA.
  Hub-kernel backends are not offered (they download code at run time).
- `grad_checkpointing`: diffusers' `enable_gradient_checkpointing()` (recompute each
  block in backward, non-reentrant).
- `compile`: `torch.compile` of the diffusers module in place (`Module.compile`, so
  state_dict keys are unchanged); each stage's frame count is a new input shape.
- `fsdp`: FSDP2 `fully_shard` of each block (the model's `_no_split_modules`, else the
  items of its ModuleLists) and then of the whole model; bf16 parameters for compute
  and float32 gradient reduction on CUDA. Checkpoints hold full (unsharded) state dicts.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def configure_backbone(backbone: nn.Module, attention: str, checkpointing: bool) -> None:
    """Attention backend and gradient checkpointing on a `VideoBackbone`'s diffusers module."""
    inner = backbone.inner
    if checkpointing:
        inner.enable_gradient_checkpointing()
    if attention != "native":
        dispatched = any(
            hasattr(getattr(m, "processor", None), "_attention_backend") for m in inner.modules()
        )
        if not dispatched:
            raise ValueError(
                f"attention={attention!r}: {type(inner).__name__} does not use diffusers' "
                "attention dispatcher; its attention already runs torch SDPA (flash / "
                "memory-efficient kernels on CUDA), so use attention=native"
            )
        inner.set_attention_backend(attention)


# graphs dynamo keeps per code object before it falls back to eager: every frame count x
# batch is one static graph, and the count is shared by all backbones of a class (the
# default of 8 runs out in one cost run of two backbones at 3 frame counts and 2 batches)
RECOMPILE_LIMIT = 64


def _allow_graphs() -> None:
    import torch._dynamo

    limit = torch._dynamo.config.recompile_limit
    torch._dynamo.config.recompile_limit = max(limit, RECOMPILE_LIMIT)


def compile_backbone(backbone: nn.Module, backend: str) -> None:
    """torch.compile the diffusers module in place (no-op for backend 'off')."""
    if backend != "off":
        _allow_graphs()
        backbone.inner.compile(backend=backend)


def compiled(module: nn.Module, backend: str) -> nn.Module:
    """`module` itself for backend 'off', else a `torch.compile` of it with static shapes
    (one graph per input shape) sharing its parameters, for repeated inference calls.

    Dynamo's guards stay on: skipping those on module attributes
    (`skip_guard_on_all_nn_modules_unsafe`) gained at most noise here and is wrong for
    two backbones behind the same wrapper class (the second reused the first's graph)."""
    if backend == "off":
        return module
    _allow_graphs()
    return torch.compile(module, backend=backend, dynamic=False)


def shard(model: nn.Module, device: torch.device) -> None:
    """FSDP2: shard every block of `model.backbone.inner`, then `model` (in place)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # inputs are not cast: u must stay float32 (t = 1000 u); autocast sets the compute dtype
    if device.type == "cuda":
        policy = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False
        )
    else:
        policy = MixedPrecisionPolicy(cast_forward_inputs=False)
    inner = model.backbone.inner
    names = set(getattr(inner, "_no_split_modules", None) or ())
    blocks = [m for m in inner.modules() if type(m).__name__ in names]
    if not blocks:
        blocks = [
            m for child in inner.children() if isinstance(child, nn.ModuleList) for m in child
        ]
    for block in blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)


def full_state(model: nn.Module, opt: torch.optim.Optimizer | None, sharded: bool):
    """(model state, optimizer state or None) as full tensors; under FSDP a collective
    that every rank must call, after which only rank 0 holds the (CPU) tensors."""
    if not sharded:
        return model.state_dict(), (opt.state_dict() if opt is not None else None)
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    optim = get_optimizer_state_dict(model, opt, options=options) if opt is not None else None
    return weights, optim


def load_optimizer(model: nn.Module, opt: torch.optim.Optimizer, state: dict, sharded: bool):
    """Load a `full_state` optimizer state (every rank passes the full dict)."""
    if not sharded:
        opt.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, opt, state, options=StateDictOptions(full_state_dict=True))


def scalar(value: Tensor) -> float:
    """A Python float from a tensor or a replicated DTensor (FSDP's gradient norm)."""
    full = getattr(value, "full_tensor", None)
    return float(full() if full is not None else value)

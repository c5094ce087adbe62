"""Prompt agreement on moving digits (PA-md): does the video show what its caption says?

Captions are MovingDigits' "a 3 moving up-left" or "a 3 moving up-left and a 5 moving down".
The embedded evaluator predicts, for every digit class, whether it is present and which of
the 8 DIRECTIONS it initially moves in. A caption's digits are a set (the video composites
them, so "first" and "second" digit are not visible in the pixels), so per video:

- digit agreement: the predicted set of present digits equals the caption's set;
- direction agreement: fraction of the caption's (digit, direction) pairs whose predicted
  direction for that digit is right;
- PA-md: both at once, i.e. digit sets equal and every pair's direction right.
Each score is the mean over videos, in [0, 1].
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import Tensor

from harness.data import DIRECTIONS

NUM_DIGITS = 10
_PAIR = re.compile(r"\ba (\d) moving ([a-z]+(?:-[a-z]+)?)\b")


def parse_caption(caption: str) -> list[tuple[int, int]]:
    """Caption -> [(digit, direction index)], e.g. "a 3 moving up-left and a 5 moving down"
    -> [(3, 4), (5, 1)].

    Raises ValueError for captions not in MovingDigits' format."""
    pairs = []
    for digit, direction in _PAIR.findall(caption.lower()):
        if direction not in DIRECTIONS:
            raise ValueError(f"caption {caption!r}: unknown direction {direction!r}")
        pairs.append((int(digit), DIRECTIONS.index(direction)))
    if not pairs:
        raise ValueError(
            f"caption {caption!r} is not a moving-digits caption ('a 3 moving up-left [and ...]'); "
            "PA-md needs moving-digits captions (use CLIPSIM with --clip for other data)"
        )
    return pairs


def caption_targets(captions: list[str]) -> tuple[Tensor, Tensor]:
    """Training targets: presence (B, 10) in {0, 1} and direction distributions (B, 10, 8).

    A digit that appears twice gets the average of its directions' one-hots; absent digits
    have an all-zero direction row."""
    presence = torch.zeros(len(captions), NUM_DIGITS)
    direction = torch.zeros(len(captions), NUM_DIGITS, len(DIRECTIONS))
    for b, caption in enumerate(captions):
        for digit, d in parse_caption(caption):
            presence[b, digit] = 1.0
            direction[b, digit, d] += 1.0
    direction = direction / direction.sum(-1, keepdim=True).clamp_min(1.0)
    return presence, direction


@dataclass(frozen=True)
class Agreement:
    """Mean agreement over `n` videos, each in [0, 1] (see the module docstring)."""

    both: float
    digit: float
    direction: float
    n: int


def prompt_agreement(present: Tensor, direction: Tensor, captions: list[str]) -> Agreement:
    """present: (N, 10) bool predicted presence; direction: (N, 10) predicted direction index."""
    if len(captions) != present.shape[0] or present.shape != direction.shape:
        raise ValueError(
            f"{len(captions)} captions for predictions {tuple(present.shape)} / "
            f"{tuple(direction.shape)}"
        )
    if not captions:
        raise ValueError("prompt agreement needs at least one video")
    both = digit = dirs = 0.0
    for b, caption in enumerate(captions):
        pairs = parse_caption(caption)
        wanted = {d for d, _ in pairs}
        got = {int(i) for i in torch.nonzero(present[b]).flatten()}
        right = sum(int(direction[b, d]) == r for d, r in pairs) / len(pairs)
        digit += float(got == wanted)
        dirs += right
        both += float(got == wanted and right == 1.0)
    n = len(captions)
    return Agreement(both=both / n, digit=digit / n, direction=dirs / n, n=n)

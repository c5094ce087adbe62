"""Text conditioning: captions -> token ids -> embeddings (B, L, D).

- `learned` (embedded default): words hashed (crc32) into a small vocabulary and
  embedded by a trainable table plus positions; trained with the backbone.
- a local folder holding a transformers CLIP or T5 text encoder and its
  tokenizer: loaded with `local_files_only=True` (never downloaded), frozen.
  UMT5 (Wan's encoder) is read too, its padded positions zeroed as WanPipeline does;
  a pretrained pipeline keeps its tokenizer in a sibling folder (`tokenizer_path`).

Tokenisation happens outside the module (`encoder.tokenize(captions)` on the
host), so the module's forward takes a LongTensor (B, L) and works under DDP.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import torch
from torch import Tensor, nn

PAD = 0


class LearnedTextEncoder(nn.Module):
    """Hashed-word embedding: (B, L) ids -> (B, L, dim)."""

    def __init__(self, dim: int = 64, length: int = 12, vocab: int = 1024):
        super().__init__()
        self.dim, self.length, self.vocab = dim, length, vocab
        self.tokens = nn.Embedding(vocab, dim, padding_idx=PAD)
        self.positions = nn.Parameter(torch.randn(length, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)

    def tokenize(self, captions: list[str]) -> Tensor:
        ids = torch.full((len(captions), self.length), PAD, dtype=torch.long)
        for i, caption in enumerate(captions):
            words = re.findall(r"[a-z0-9]+", caption.lower())[: self.length]
            for j, word in enumerate(words):
                ids[i, j] = 1 + zlib.crc32(word.encode()) % (self.vocab - 1)
        return ids

    def forward(self, ids: Tensor) -> Tensor:
        return self.norm(self.tokens(ids) + self.positions[: ids.shape[1]])


class PretrainedTextEncoder(nn.Module):
    """A frozen transformers text encoder (CLIP or T5) from a local folder: (B, L) -> (B, L, D)."""

    def __init__(
        self, path: str | Path, length: int = 77, tokenizer_path: str | Path | None = None
    ):
        super().__init__()
        from transformers import (
            AutoConfig,
            AutoTokenizer,
            CLIPTextModel,
            T5EncoderModel,
            UMT5EncoderModel,
        )

        path = Path(path)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"no text encoder at {path}: expected a transformers folder with config.json, "
                "the weights (model.safetensors) and tokenizer files, e.g. saved with "
                "model.save_pretrained(path) and tokenizer.save_pretrained(path)"
            )
        kind = AutoConfig.from_pretrained(path, local_files_only=True).model_type
        classes = {"clip_text_model": CLIPTextModel, "clip": CLIPTextModel, "t5": T5EncoderModel,
                   "umt5": UMT5EncoderModel}  # fmt: skip
        if kind not in classes:
            raise ValueError(f"text encoder at {path} is a {kind!r} model; use CLIP, T5 or UMT5")
        self.model = classes[kind].from_pretrained(path, local_files_only=True)
        self.tokenizer = AutoTokenizer.from_pretrained(
            tokenizer_path or path, local_files_only=True
        )
        self.model.requires_grad_(False).eval()
        self.length = min(length, self.tokenizer.model_max_length)
        self.pad_id = self.tokenizer.pad_token_id or 0
        self.dim = self.model.config.hidden_size
        self.use_mask = kind in ("t5", "umt5")  # CLIP text encoders are used unmasked (as in SD)
        self.zero_padding = kind == "umt5"  # WanPipeline zeroes the embeddings past the prompt

    def tokenize(self, captions: list[str]) -> Tensor:
        out = self.tokenizer(
            captions,
            padding="max_length",
            truncation=True,
            max_length=self.length,
            return_tensors="pt",
        )
        return out.input_ids

    def forward(self, ids: Tensor) -> Tensor:
        mask = (ids != self.pad_id).long() if self.use_mask else None
        with torch.no_grad():
            out = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return out * mask[..., None].to(out.dtype) if self.zero_padding else out


def build_text_encoder(spec: str, dim: int = 64, length: int = 12) -> nn.Module:
    """`learned` -> LearnedTextEncoder(dim, length); otherwise a local transformers folder."""
    if spec == "learned":
        return LearnedTextEncoder(dim=dim, length=length)
    return PretrainedTextEncoder(spec, length=length)

import pytest
import torch
from tiny_models import save_tiny_clip

from harness.models.text import LearnedTextEncoder, PretrainedTextEncoder, build_text_encoder


def test_learned_encoder_tokenizes_words_deterministically():
    enc = LearnedTextEncoder(dim=16, length=6)
    ids = enc.tokenize(["a 3 moving up-left", "A 3 moving UP left", "a 7 moving down"])
    assert ids.shape == (3, 6) and ids.dtype == torch.long
    assert torch.equal(ids[0], ids[1])  # case and punctuation do not matter
    assert not torch.equal(ids[0], ids[2])
    assert (ids[0, 5:] == 0).all()  # padding after the 5 words
    out = enc(ids)
    assert out.shape == (3, 6, 16)
    out.sum().backward()
    assert enc.tokens.weight.grad is not None


def test_pretrained_clip_loads_from_a_local_folder(tmp_path):
    path = save_tiny_clip(tmp_path / "clip")
    enc = build_text_encoder(str(path), length=16)
    assert isinstance(enc, PretrainedTextEncoder) and enc.dim == 32
    ids = enc.tokenize(["a 3 moving up", "a 7 moving down"])
    out = enc(ids)
    assert out.shape == (2, 16, 32)
    assert not torch.allclose(out[0], out[1])
    assert not any(p.requires_grad for p in enc.parameters())


def test_missing_text_encoder_folder_names_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="expected a transformers folder with config.json"):
        build_text_encoder(str(tmp_path / "nowhere"))

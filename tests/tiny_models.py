"""Tiny randomly initialised transformers models saved to disk by the tests (no downloads)."""

from pathlib import Path


def _byte_alphabet() -> list[str]:
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    extra = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable] + [chr(256 + i) for i in range(len(extra))]


def save_tiny_clip(path: Path, hidden: int = 32, with_vision: bool = False) -> Path:
    """A byte-level CLIP tokenizer (no merges) and a 1-layer CLIP text (or full CLIP) model."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    chars = _byte_alphabet()
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    text = dict(
        vocab_size=len(vocab),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=32,
        bos_token_id=vocab["<|startoftext|>"],
        eos_token_id=vocab["<|endoftext|>"],
        pad_token_id=vocab["<|endoftext|>"],
    )
    if with_vision:
        vision = dict(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    else:
        model = CLIPTextModel(CLIPTextConfig(**text))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_video_folder(root: Path, good: int = 3, frames: int = 20) -> Path:
    """mp4 clips of a moving square (plus one corrupt file) and captions.csv under `root`."""
    import av
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    rows = ["path,caption"]
    for k in range(good):
        name = f"clip{k}.mp4"
        with av.open(str(root / name), "w") as out:
            stream = out.add_stream(codec, rate=8)
            stream.width, stream.height, stream.pix_fmt = 48, 40, "yuv420p"
            for t in range(frames):
                img = np.zeros((40, 48, 3), np.uint8)
                x = (3 * t + 5 * k) % 36
                img[10:22, x : x + 12] = (255, 200 - 50 * k, 40)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            out.mux(stream.encode())
        rows.append(f"{name},a square moving right {k}")
    (root / "broken.mp4").write_bytes(b"\x00\x01not a video" * 50)
    rows.append("broken.mp4,a corrupt file")
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return root


def save_tiny_clip_processor(path: Path, size: int = 32) -> Path:
    """A full tiny CLIP (text + vision) plus the image processor config CLIPScore needs."""
    from transformers import CLIPImageProcessor

    save_tiny_clip(path, with_vision=True)
    CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    ).save_pretrained(path)
    return path

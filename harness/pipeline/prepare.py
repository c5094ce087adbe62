"""Preparing a run's data once: `python -m harness.prepare [--config FILE] [key=value ...]`.

Takes the same config and overrides as `python -m harness.train`. For `dataset=video-folder`
it decodes the folder's clips in `--workers` processes into sharded, memory-mapped arrays
(`harness.data.prepared`) under `data_cache` (default `<out_dir>/prepared/`), where training
with that config finds them on its own; then, when the run trains in a latent space (a
pretrained pipeline's VAE), it encodes them into the latent cache, itself sharded. Under
`torchrun --nproc_per_node N -m harness.prepare ...` rank 0 decodes and every rank encodes
its share of the latent shards on its own GPU. Rerunning continues where a killed run
stopped, and redoes what a changed folder affects: the prepared shards whose CSV rows or
files changed (content hashes, `harness.data.prepared`), and the latent shards from the
first one whose videos changed (`harness.models.latents`). The job holds the prepared
folder while it runs (`harness.common.lock`): a second prepare of the same folder is
refused with one line naming the holder. Other datasets are generated on the fly and need
no preparation.
"""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path

from tqdm.auto import tqdm

from harness.common.cli import guarded
from harness.common.config import Config, config_parser
from harness.common.lock import owned
from harness.data.prepared import Source, prepare, prepared_folder
from harness.data.video_folder import caption_file
from harness.models.codec import codec_for
from harness.pipeline.build import build_data, parse_config, prepared_base, video_source
from harness.pipeline.train import barrier, setup_distributed


def main(cfg: Config, workers: int = 1, shard_size: int = 256, progress: bool = True) -> Path:
    """Prepare `cfg`'s video folder (and its latents, for a latent codec); the folder."""
    if cfg.dataset != "video-folder":
        raise ValueError(
            f"dataset={cfg.dataset} is generated on the fly and needs no preparation; "
            "prepare applies to dataset=video-folder"
        )
    if not cfg.data_root:
        raise ValueError("dataset=video-folder needs data_root=FOLDER (videos + captions.csv)")
    device, rank, world = setup_distributed(cfg)
    sync = (lambda: barrier(device)) if world > 1 else (lambda: None)
    source = video_source(cfg)
    caption_file(Path(source.root), source.csv)  # a missing folder fails before any lock
    folder = prepared_folder(source, prepared_base(cfg))
    # one job prepares a folder: a second is refused; the other ranks share rank 0's hold
    with owned(folder, "prepared data") if rank == 0 else nullcontext():
        if rank == 0:  # decoding uses worker processes on one node; encoding uses every rank
            decode_folder(source, folder, workers, shard_size, progress)
        sync()
        codec = codec_for(cfg, progress=progress and rank == 0)
        codec.training_data(lambda: build_data(cfg), device, rank, world, sync)
    return folder


def decode_folder(source: Source, folder: Path, workers: int, shard_size: int,
                  progress: bool) -> None:  # fmt: skip
    """Decode `source`'s clips into shards in `folder`, with a progress bar."""
    bars: list[tqdm] = []  # opened on the first report: a bad folder fails before any bar

    def show(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="prepare", unit="clip", disable=not progress))
        bars[0].n = done
        bars[0].refresh()

    try:
        index = prepare(source, folder, workers, shard_size, progress=show)
    finally:
        for bar in bars:
            bar.close()
    print(f"{index['count']} clips in {len(index['shards'])} shards -> {folder}")
    for path, reason in index["skipped"].items():
        print(f"skipped {path}: {reason}")


def cli(argv: list[str] | None = None) -> Path:
    prog = "python -m harness.prepare"
    parser = config_parser(prog, "Decode (and encode) a run's video folder once, into shards.")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="decoding processes (default: every CPU core)")  # fmt: skip
    parser.add_argument("--shard-size", type=int, default=256, help="clips per shard")
    args = parser.parse_intermixed_args(argv)
    return guarded(prog, args.debug, lambda: main(parse_config(args), args.workers,
                                                 args.shard_size))  # fmt: skip


if __name__ == "__main__":
    cli()
    sys.exit(0)

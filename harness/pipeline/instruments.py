"""The committed instruments: `python -m harness.weights [list | train KIND ...]`.

The embedded evaluator (FVD-md, KVD-md, PA-md) and the tiny autoencoder (every CPU run's
data path) of the CPU recipe are committed under `weights/`, listed with the hash of their
tensors in `weights/manifest.json` (see `harness.models.cached`). Every score's identity
carries those hashes, so a score made with other weights is never reused as one made with
these.

- `list` (the default) loads every committed file, checks its hash against the manifest and
  prints its recipe key, hash and held-out figures; a mismatch exits 2 naming the file.
- `train KIND` (evaluator, autoencoder or all) retrains every committed recipe of KIND from
  scratch and says whether the new weights equal the committed ones (training is
  deterministic at one thread count; another thread count gives other weights). With
  `--commit` the new weights replace the committed ones and the manifest: every score made
  with the old ones is then recomputed on the next run. `--seed N` trains the recipe with
  another seed into `--out` (never committed): how the metrics move between evaluators
  trained with different seeds (docs/metrics.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from harness.common.cli import add_debug_flag, guarded
from harness.metrics import evaluator as ev
from harness.models import autoencoder as ae
from harness.models import cached


@dataclasses.dataclass(frozen=True)
class Instrument:
    recipe: type
    version: int
    train: Callable  # (recipe, progress) -> (state_dict, info)


INSTRUMENTS = {
    "evaluator": Instrument(ev.EvaluatorRecipe, ev.VERSION, ev.train_and_describe),
    "autoencoder": Instrument(ae.AutoencoderRecipe, ae.VERSION, ae.train_autoencoder),
}


def committed_recipes(kind: str) -> list:
    """The recipes of `kind` that weights/manifest.json lists."""
    listing = cached.manifest()
    recipe = INSTRUMENTS[kind].recipe
    return [recipe(**e["recipe"]) for k, e in listing.items() if k.split("/")[0] == kind]


def check_all() -> list[dict]:
    """Every committed file loaded and checked against the manifest -> one row each."""
    rows = []
    for name in cached.manifest():
        kind, key = name.split("/", 1)
        if kind not in INSTRUMENTS:
            raise ValueError(f"weights/manifest.json lists {name!r}, of no known kind "
                             f"({', '.join(INSTRUMENTS)}): remove the entry")  # fmt: skip
        inst = INSTRUMENTS[kind]
        recipe = next(r for r in committed_recipes(kind) if r.key() == key)
        found = cached.committed(kind, recipe, inst.version, key)
        rows.append(dict(kind=kind, key=key, sha=found.sha, info=cached._summary(found.info)))
    return rows


def retrain(kind: str, seed: int | None, out: Path | None, commit: bool) -> list[dict]:
    """Train every committed recipe of `kind` again (with `seed`, if given) -> one row each:
    the new hash, the committed one and whether they are equal."""
    if commit and seed is not None:
        raise ValueError("--seed trains a variant for a study; it is never committed")
    rows = []
    for recipe in committed_recipes(kind):
        inst = INSTRUMENTS[kind]
        variant = recipe if seed is None else dataclasses.replace(recipe, seed=seed)
        before = cached.manifest()[f"{kind}/{recipe.key()}"]["sha"]
        start = time.perf_counter()
        state_dict, info = inst.train(variant, True)
        sha = cached.state_hash(state_dict)
        if commit:
            path = cached.commit(kind, recipe.key(), recipe, inst.version, state_dict, info)
        else:
            path = cached.cache_dir(kind, out) / f"{variant.key()}.pt"
            cached.save(path, variant, inst.version, state_dict, info)
        rows.append(dict(kind=kind, key=variant.key(), seed=variant.seed, sha=sha,
                         committed_sha=before, equal=sha == before, path=str(path),
                         threads=torch.get_num_threads(),
                         seconds=round(time.perf_counter() - start, 1)))  # fmt: skip
    return rows


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness.weights", description=__doc__.split("\n\n")[0])
    add_debug_flag(parser)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("list", help="check and list the committed weights (the default)")
    train = sub.add_parser("train", help="retrain committed recipes from scratch")
    train.add_argument("kind", choices=[*INSTRUMENTS, "all"])
    train.add_argument("--seed", type=int, help="train a variant with this seed (not committed)")
    train.add_argument("--out", type=Path, help="cache root of uncommitted weights "
                       "(default: $TPDIFF_CACHE or ~/.cache/tpdiff-harness)")  # fmt: skip
    train.add_argument(
        "--commit",
        action="store_true",
        help="replace the committed weights and manifest with the new ones",
    )
    args = parser.parse_args(argv)

    def run() -> int:
        if args.command == "train":
            kinds = list(INSTRUMENTS) if args.kind == "all" else [args.kind]
            for kind in kinds:
                for row in retrain(kind, args.seed, args.out, args.commit):
                    same = "equal to" if row["equal"] else "differ from"
                    print(f"{row['kind']} {row['key']} seed {row['seed']}: {row['sha']} "
                          f"({same} committed {row['committed_sha']}; {row['threads']} "
                          f"threads, {row['seconds']} s) -> {row['path']}")  # fmt: skip
            return 0
        for row in check_all():
            print(f"{row['kind']:12s} {row['key']:28s} {row['sha']}  {row['info']}")
        return 0

    return guarded("harness.weights", args.debug, run)

"""The committed instruments: `python -m harness.weights [list | train KIND ...]`.

The embedded evaluator (FVD-md, KVD-md, PA-md) and the tiny autoencoder (every CPU run's
data path) of the CPU recipe are committed under `weights/`, listed with the hash of their
tensors in `weights/manifest.json` (see `harness.models.cached`). Every score's identity
carries those hashes, so a score made with other weights is never reused as one made with
these.

- `list` (the default) loads every committed file, checks its hash against the manifest and
  prints its recipe key, hash and held-out figures; a mismatch exits 2 naming the file.
- `train KIND --add FIELD=VALUE ... [--like KEY] --commit` trains a new recipe (the
  committed one of KIND named by --like, or the only one, with those fields changed, e.g.
  the evaluator at 16 frames for K = 5) and commits it beside the others.
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
import typing
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


def parse_changes(kind: str, pairs: list[str]) -> dict:
    """`["frames=16", ...]` -> {"frames": 16} for fields of KIND's recipe, each converted to
    the field's declared type (lr=1 -> 1.0, frames=16.0 -> 16; a bool takes true or false),
    so one recipe has one key; an unknown field or a value of the wrong type is refused by
    name."""
    fields = typing.get_type_hints(INSTRUMENTS[kind].recipe)
    changes = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--add {pair!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(fields)}")  # fmt: skip
        try:
            changes[key] = _typed(fields[key], value)
        except ValueError:
            raise ValueError(f"--add {pair!r}: {key} of the {kind} recipe takes "
                             f"{TYPE_NAMES.get(fields[key], 'text')}") from None  # fmt: skip
    return changes


TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number"}


def _typed(kind: type, value: str):
    if kind is bool:
        if value.lower() not in ("true", "false"):
            raise ValueError(value)
        return value.lower() == "true"
    if kind is int:
        number = float(value)  # 16, 16.0 and 1e3 are whole numbers; 16.5 is not
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    return kind(value)


def retrain(kind: str, seed: int | None, out: Path | None, commit: bool,
            add: dict | None = None, like: str | None = None) -> list[dict]:  # fmt: skip
    """Train every committed recipe of `kind` again (with `seed`, if given) -> one row each:
    the new hash, the committed one (None: a new recipe) and whether they are equal. `add`:
    instead, train the committed recipe `like` (a key; may be left out when KIND has one)
    with these fields changed, a new instrument (e.g. the evaluator at 16 frames), committed
    beside the others with `commit`."""
    if commit and seed is not None:
        raise ValueError("--seed trains a variant for a study; it is never committed")
    if like is not None and not add:
        raise ValueError(f"--like {like!r} names the committed recipe that --add changes: "
                         "pass --add FIELD=VALUE with it, or leave --like out")  # fmt: skip
    recipes = committed_recipes(kind)
    if add:
        keys = [r.key() for r in recipes]
        if like is None and len(recipes) != 1:
            raise ValueError(f"--add: {len(recipes)} {kind} recipes are committed ({keys}); "
                             "name the one to change with --like KEY")  # fmt: skip
        if like is not None and like not in keys:
            raise ValueError(f"--like {like!r}: no committed {kind} recipe has that key; "
                             f"choose one of {keys}")  # fmt: skip
        base = recipes[0] if like is None else recipes[keys.index(like)]
        recipes = [dataclasses.replace(base, **add)]
    rows = []
    for recipe in recipes:
        inst = INSTRUMENTS[kind]
        variant = recipe if seed is None else dataclasses.replace(recipe, seed=seed)
        before = cached.manifest().get(f"{kind}/{recipe.key()}", {}).get("sha")
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
    train.add_argument("--add", nargs="+", metavar="FIELD=VALUE",
                       help="train a new recipe: a committed one of KIND (--like) with these "
                       "fields changed (e.g. frames=16)")  # fmt: skip
    train.add_argument("--like", metavar="KEY",
                       help="with --add: the committed recipe to change (python -m "
                       "harness.weights lists the keys; needed when KIND has several)")  # fmt: skip
    train.add_argument(
        "--commit",
        action="store_true",
        help="replace the committed weights and manifest with the new ones",
    )
    args = parser.parse_args(argv)

    def run() -> int:
        if args.command == "train":
            kinds = list(INSTRUMENTS) if args.kind == "all" else [args.kind]
            if args.add and len(kinds) > 1:
                raise ValueError("--add needs one KIND (evaluator or autoencoder), not all")
            for kind in kinds:
                add = parse_changes(kind, args.add) if args.add else None
                for row in retrain(kind, args.seed, args.out, args.commit, add, args.like):
                    same = ("a new recipe" if row["committed_sha"] is None else
                            f"{'equal to' if row['equal'] else 'differ from'} committed "
                            f"{row['committed_sha']}")  # fmt: skip
                    print(f"{row['kind']} {row['key']} seed {row['seed']}: {row['sha']} "
                          f"({same}; {row['threads']} threads, {row['seconds']} s) -> "
                          f"{row['path']}")  # fmt: skip
            return 0
        for row in check_all():
            print(f"{row['kind']:12s} {row['key']:28s} {row['sha']}  {row['info']}")
        return 0

    return guarded("harness.weights", args.debug, run)

"""The committed instruments (weights/, harness.models.cached, python -m harness.weights): every
machine scores with the same bytes, a changed file is refused by name, and the weights'
hash is part of every score's identity."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.common.config import Config
from harness.metrics import MetricOptions
from harness.metrics import evaluator as ev
from harness.models import autoencoder as ae
from harness.models import cached
from harness.pipeline import instruments
from harness.pipeline.evaluate import metrics_key
from harness.studies.core import cpu_recipe

ROOT = Path(__file__).resolve().parent.parent
CPU_EVALUATOR = ev.EvaluatorRecipe(**cpu_recipe.EVALUATOR)
# the tiny autoencoder of the CPU recipe's data (harness.models.autoencoder.recipe_for)
CPU_CONFIG = Config().replace(**cpu_recipe.OVERRIDES)


def _no_training(*args, **kwargs):
    raise AssertionError("committed weights must be loaded, not trained")


def test_the_cpu_recipe_scores_with_the_committed_weights_on_an_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cached.CACHE_ENV, str(tmp_path / "empty"))
    monkeypatch.setattr(ev, "train_evaluator", _no_training)
    monkeypatch.setattr(ae, "train_autoencoder", _no_training)
    listing = json.loads((ROOT / "weights" / "manifest.json").read_text())
    evaluator = ev.load_evaluator(CPU_EVALUATOR, progress=False)
    assert evaluator.sha == listing[f"evaluator/{CPU_EVALUATOR.key()}"]["sha"]
    codec = ae.load_autoencoder(ae.recipe_for(CPU_CONFIG), progress=False)
    assert codec.sha == listing[f"autoencoder/{ae.recipe_for(CPU_CONFIG).key()}"]["sha"]
    assert not (tmp_path / "empty").exists()  # nothing trained, nothing cached


def _copy_committed(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "weights"
    shutil.copytree(ROOT / "weights", root)
    monkeypatch.setattr(cached, "COMMITTED", root)
    cached._load.cache_clear()
    return root


def test_a_changed_committed_file_is_refused_by_name(tmp_path, monkeypatch):
    root = _copy_committed(tmp_path, monkeypatch)
    path = root / "evaluator" / f"{CPU_EVALUATOR.key()}.pt"
    state = torch.load(path, weights_only=False)
    name = next(iter(state["state_dict"]))
    state["state_dict"][name] = state["state_dict"][name] + 1e-3
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"have hash .* lists .*git checkout weights/"):
        ev.load_evaluator(CPU_EVALUATOR, progress=False)
    path.unlink()
    with pytest.raises(FileNotFoundError, match="committed evaluator weights .* are missing"):
        ev.load_evaluator(CPU_EVALUATOR, progress=False)


def test_the_weights_hash_is_part_of_every_score_identity(tmp_path, monkeypatch):
    options = MetricOptions(evaluator=CPU_EVALUATOR)
    before = metrics_key(["fvd-md"], options, CPU_CONFIG)
    assert before == metrics_key(["fvd-md"], options, CPU_CONFIG)
    root = _copy_committed(tmp_path, monkeypatch)
    state = torch.load(root / "evaluator" / f"{CPU_EVALUATOR.key()}.pt", weights_only=False)
    name = next(iter(state["state_dict"]))
    state["state_dict"][name] = state["state_dict"][name] * 1.01  # retrained: other weights
    cached.commit("evaluator", CPU_EVALUATOR.key(), CPU_EVALUATOR, ev.VERSION,
                  state["state_dict"], state["info"])  # fmt: skip
    after = metrics_key(["fvd-md"], options, CPU_CONFIG)
    assert after != before
    # the autoencoder decodes every sample: its weights count even for flicker alone
    flicker = metrics_key(["flicker"], options, CPU_CONFIG)
    assert flicker == metrics_key(["flicker"], options, CPU_CONFIG.replace(latent_channels=2))
    assert flicker != metrics_key(["flicker"], options, CPU_CONFIG.replace(latent_channels=0))
    # the bootstrap draws behind -lo / -hi count too; the default keeps the keys made before
    fewer = dataclasses.replace(options, bootstrap=50)
    assert metrics_key(["flicker"], fewer, CPU_CONFIG) != flicker
    assert (
        metrics_key(["flicker"], dataclasses.replace(fewer, bootstrap=200), CPU_CONFIG) == flicker
    )


def test_retraining_is_an_explicit_command_and_deterministic(tmp_path, monkeypatch):
    """A committed tiny recipe retrained in this process gives the same bytes; with
    --commit the manifest records the new weights' hash."""
    root = tmp_path / "weights"
    monkeypatch.setattr(cached, "COMMITTED", root)
    recipe = ev.EvaluatorRecipe(frames=4, size=16, steps=3, batch_size=4, digit_size=8,
                                heldout=8, width=4, embed_dim=8)  # fmt: skip
    state_dict, info = ev.train_and_describe(recipe)
    cached.commit("evaluator", recipe.key(), recipe, ev.VERSION, state_dict, info)
    rows = instruments.retrain("evaluator", None, tmp_path / "cache", commit=False)
    assert len(rows) == 1 and rows[0]["equal"] and rows[0]["sha"] == cached.state_hash(state_dict)
    variant = instruments.retrain("evaluator", 5, tmp_path / "cache", commit=False)[0]
    assert not variant["equal"] and Path(variant["path"]).is_file()
    with pytest.raises(ValueError, match="never committed"):
        instruments.retrain("evaluator", 5, None, commit=True)
    assert [r["key"] for r in instruments.check_all()] == [recipe.key()]
    # a new instrument: the committed recipe with a field changed, committed beside it
    added = instruments.retrain("evaluator", None, None, commit=True, add={"frames": 8})[0]
    assert added["committed_sha"] is None and added["key"] != recipe.key()
    keys = sorted(r["key"] for r in instruments.check_all())
    assert keys == sorted([recipe.key(), added["key"]])
    with pytest.raises(ValueError, match="name the one to change with --like KEY"):
        instruments.retrain("evaluator", None, None, commit=False, add={"frames": 12})
    with pytest.raises(ValueError, match="--like 'nope'"):
        instruments.retrain("evaluator", None, None, commit=False, add={"frames": 12}, like="nope")


def test_added_fields_are_parsed_and_unknown_ones_named():
    assert instruments.parse_changes("evaluator", ["frames=16", "lr=0.5"]) == {
        "frames": 16, "lr": 0.5}  # fmt: skip
    with pytest.raises(ValueError, match="--add 'nope=1': expected FIELD=VALUE"):
        instruments.parse_changes("evaluator", ["nope=1"])


def test_added_fields_take_their_declared_type_so_one_recipe_has_one_key():
    """lr=1 is the float 1.0 and frames=16.0 the int 16: the same recipe as lr=1.0 and
    frames=16, under the same key."""
    one = instruments.parse_changes("evaluator", ["lr=1", "frames=16.0", "steps=1e3"])
    assert one == {"lr": 1.0, "frames": 16, "steps": 1000}
    assert type(one["lr"]) is float and type(one["frames"]) is int
    other = instruments.parse_changes("evaluator", ["lr=1.0", "frames=16", "steps=1000"])
    assert ev.EvaluatorRecipe(**one).key() == ev.EvaluatorRecipe(**other).key()
    whole = "--add 'frames=16.5': frames of the evaluator recipe takes a whole number"
    with pytest.raises(ValueError, match=whole):
        instruments.parse_changes("evaluator", ["frames=16.5"])
    with pytest.raises(ValueError, match="--add 'lr=fast': lr of the evaluator recipe takes a "):
        instruments.parse_changes("evaluator", ["lr=fast"])


def test_like_without_add_is_refused_in_one_line(capsys, monkeypatch):
    inst = instruments.INSTRUMENTS["evaluator"]  # nothing may be retrained
    monkeypatch.setitem(instruments.INSTRUMENTS, "evaluator",
                        dataclasses.replace(inst, train=_no_training))  # fmt: skip
    with pytest.raises(SystemExit) as stop:
        instruments.cli(["train", "evaluator", "--like", "md-f16-s16-x"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--like 'md-f16-s16-x' names the committed recipe" in err[0]
    assert "pass --add FIELD=VALUE with it" in err[0]


def test_the_list_command_checks_the_committed_files():
    done = subprocess.run([sys.executable, "-m", "harness.weights", "list"], cwd=ROOT,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    listing = json.loads((ROOT / "weights" / "manifest.json").read_text())
    for name, entry in listing.items():
        assert name.split("/")[1] in done.stdout and entry["sha"] in done.stdout

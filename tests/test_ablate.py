"""Named ablations and the shared train-and-score unit (`harness.studies.core.train_and_score`)."""

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from test_report import cut, folder_bytes

import harness.pipeline.evaluate as evaluate
import harness.pipeline.train as train
import harness.studies.ablations.report as ablation_report
import harness.studies.ablations.run as ablate
import harness.studies.core.train_and_score as trials
import harness.studies.suites.report as report
from ablations import ABLATIONS, PAPER
from harness.metrics.evaluator import load_evaluator
from harness.pipeline.build import plan_for
from harness.studies.core import animations
from harness.studies.core.protocol import METRICS
from harness.studies.core.scale import SCALES


@pytest.mark.parametrize("scale", ["tiny", "cpu", "gpu"])
def test_every_variant_is_a_valid_config_difference(tmp_path, scale):
    base = trials.trial_config(SCALES[scale], tmp_path).to_dict()
    for name, ablation in ABLATIONS.items():
        assert PAPER in ablation.variants, name
        for label, changes in ablation.variants.items():
            cfg = trials.trial_config(SCALES[scale], tmp_path, **(ablation.base | changes))
            plan = plan_for(cfg)  # raises on an invalid plan (K = 5 has its 16 frames)
            assert plan.num_frames == cfg.frames
            differs = {k for k, v in cfg.to_dict().items() if base[k] != v} - {"name"}
            assert differs == set(ablation.base | changes) - {
                k for k, v in ablation.base.items() if base[k] == v
            }, (name, label)


def test_the_design_pairs_every_variant_with_the_paper_seeds(tmp_path):
    rows, skipped = ablate.design(["renoise", "upsample"], SCALES["tiny"], tmp_path, offset=100)
    seeds = {}
    for v in rows:
        seeds.setdefault((v.ablation, v.label), []).append(v.seed)
    assert seeds["renoise", PAPER] == seeds["renoise", "off"] == [100, 101, 102]
    assert seeds["upsample", PAPER] == [100, 101, 102] and seeds["upsample", "linear"] == [100]
    assert not skipped
    arms = ablate.arms(rows, SCALES["tiny"])
    # the paper setting trains once per seed for both ablations, and renoising is sampling
    # only: 3 paper runs (each with 3 finals: exact, off, pyramid-flow) + 1 linear run
    assert len(arms) == 4
    paper = [a for a in arms if len(a.last) == 3]
    assert len(paper) == 3 and {a.cfg.name.rsplit("-seed", 1)[1] for a in paper} == {
        "100", "101", "102"}  # fmt: skip
    assert {e.extra["seed"] for a in paper for e in a.last} == {100, 101, 102}
    with pytest.raises(ValueError, match=r"unknown ablation\(s\) \['nope'\]"):
        ablate.design(["nope"], SCALES["tiny"], tmp_path)


def test_sampling_only_variants_share_one_training_run(tmp_path):
    scale = SCALES["tiny"]
    base = trials.trial_config(scale, tmp_path)
    norenoise = trials.trial_config(scale, tmp_path, renoise=False)
    front = trials.trial_config(scale, tmp_path, stage_steps=(3, 2, 1))
    noalign = trials.trial_config(scale, tmp_path, align=False)
    assert base.name == norenoise.name == front.name != noalign.name
    train, changes = trials.split_sampling(front)
    assert train.stage_steps == () and changes == {"stage_steps": (3, 2, 1)}
    # with steps-weighted stage sampling the step split changes training, so it is kept
    weighted = trials.trial_config(scale, tmp_path, stage_weighting="steps", stage_steps=(3, 2, 1))
    other = trials.trial_config(scale, tmp_path, stage_weighting="steps")
    assert weighted.name != other.name
    assert trials.split_sampling(weighted)[0].stage_steps == (3, 2, 1)


@pytest.fixture(scope="module")
def renoise_folder(tmp_path_factory):
    """The renoise ablation at the tiny scale, trained, finished and drawn: 3 seeds of the
    paper setting, each sampled three ways."""
    out = tmp_path_factory.mktemp("ablations")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TPDIFF_CACHE", str(out / "cache"))
        load_evaluator(SCALES["tiny"].evaluator, out / "cache", progress=False)
        table = ablate.ablate(["renoise"], "tiny", out, workers=1)
        summary = ablate.run_all(out, [], "tiny", train=False)
    return out, table, summary


@pytest.mark.slow
def test_renoise_ablation_end_to_end(renoise_folder):
    out, table, summary = renoise_folder
    assert list(table["variant"]) == [PAPER] * 3 + ["off"] * 3 + ["pyramid-flow"] * 3
    assert list(table["seed"]) == [0, 1, 2] * 3
    assert table["stutter"].notna().all() and table["motion-gap"].notna().all()
    curves = pd.read_csv(out / "renoise" / "curves.csv")
    assert len(curves) == 18 and list(curves["step"]) == [2, 4] * 9  # a curve point, a final
    assert table["run"].nunique() == 3  # one training run per seed serves all three
    run = out / "runs" / table["run"][0]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # trained once, in two resumed chunks
    evals = pd.read_csv(run / "evals.csv")
    assert len(evals) == 4 and evals["sampling"].str.endswith("norenoise-seed0").sum() == 1
    assert evals["sampling"].str.endswith("pfrenoise-seed0").sum() == 1
    assert table["train_gflops"].nunique() == 1
    assert (table[ablate.COLUMNS].notna()).all().all()

    assert list(summary["ablations"]) == list(ABLATIONS)  # every registered ablation
    rows = {r["variant"]: r for r in summary["ablations"]["renoise"]["variants"]}
    assert rows[PAPER]["verdict"] == "reference" and rows[PAPER]["seeds"] == "0 1 2"
    for v in ("off", "pyramid-flow"):
        row = rows[v]
        assert row["seeds"] == "0 1 2" and row["verdict"] in {"better", "worse", "within noise"}
        assert row["verdict_lo"] <= row["verdict_gap"] <= row["verdict_hi"]
        if row["verdict"] == "within noise":
            assert row["verdict_mde"] > 0 and row["verdict_mde_share"] > 0
        assert row["flop_ratio_bound"] > 1 and row["inference_speedup"] > 0
    # a row at noise level is not tested (4 tiny steps may not learn): the family counts the rest
    tested = [pd.notna(rows[v]["verdict_p_holm"]) for v in ("off", "pyramid-flow")]
    assert summary["multiple_comparisons"]["FVD-md"]["tested"] == sum(tested)
    stages = {r["variant"]: r for r in summary["ablations"]["stages"]["variants"]}
    assert stages["K=2"]["status"] == "not run"
    for name in (
        "renoise/renoise.png",
        "renoise/renoise_samples.png",
        "renoise/renoise_samples.gif",
        "report.md",
        "summary.csv",
        "summary.json",
        "speed.csv",
        "strips.pt",
        "phases.json",
    ):
        assert (out / name).stat().st_size > 0, name
    text = (out / "report.md").read_text()
    assert "Not run in this folder" in text and "Holm" in text
    assert "(renoise/renoise_samples.gif)" in text  # the strips, moving
    with Image.open(out / "renoise" / "renoise_samples.gif") as gif:
        assert gif.n_frames == 8  # the tiny recipe's frames
        # one column per variant, at least as wide as its upscaled frame
        assert gif.width >= animations.LABEL_W + 3 * (4 * 16 + animations.PAD)


@pytest.mark.slow
def test_an_ablations_folder_redraws_from_its_files_alone(renoise_folder, tmp_path):
    folder = tmp_path / "ablations"
    shutil.copytree(renoise_folder[0], folder, ignore=shutil.ignore_patterns("runs", "cache"))
    drawn = (folder / "summary.json").read_text()
    (folder / "summary.json").unlink()
    assert report.main([str(folder)]) == 0
    assert (folder / "summary.json").read_text() == drawn


def test_nan_loss_fails_with_the_step(tmp_path, monkeypatch):
    scale = SCALES["tiny"]
    cfg = trials.trial_config(scale, tmp_path)
    real = train.draw_training_batch

    def poisoned(*args, **kwargs):
        batch = real(*args, **kwargs)
        return dataclasses.replace(batch, x_u=batch.x_u * float("nan"))

    monkeypatch.setattr(train, "draw_training_batch", poisoned)
    with pytest.raises(FloatingPointError, match="non-finite loss nan at step 1"):
        trials.train_and_score([trials.trial_arm(cfg, scale.curve, METRICS)], None)


@pytest.mark.slow
def test_reuse_recomputes_no_finished_score(tmp_path, monkeypatch):
    monkeypatch.setenv("TPDIFF_CACHE", str(tmp_path / "cache"))
    table = ablate.ablate(["upsample"], "tiny", tmp_path, workers=1)
    assert len(table) == 4  # the paper setting at 3 seeds, linear at 1

    def fail(*args, **kwargs):
        raise AssertionError("a finished score was recomputed")

    monkeypatch.setattr(evaluate, "score_checkpoint", fail)
    again = ablate.ablate(["upsample"], "tiny", tmp_path, workers=1)
    pd.testing.assert_frame_equal(again, table)


@pytest.mark.slow
def test_finished_runs_of_the_same_config_are_reused_not_trained(tmp_path, monkeypatch):
    monkeypatch.setenv("TPDIFF_CACHE", str(tmp_path / "cache"))
    first = ablate.ablate(["upsample"], "tiny", tmp_path / "a", workers=1)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run of the same config was trained again")

    monkeypatch.setattr(train, "draw_training_batch", no_training)
    again = ablate.ablate(["upsample"], "tiny", tmp_path / "b", workers=1,
                          reuse=tmp_path / "a" / "runs")  # fmt: skip
    runs = [p.name for p in (tmp_path / "b" / "runs").iterdir() if p.is_dir()]
    assert sorted(runs) == sorted(first["run"])
    assert list(again["FVD-md"]) == list(first["FVD-md"])  # the same weights, the same scores


def _files(paper: list[float], variant: list[float], seeds=(0, 1, 2)) -> dict:
    """A checked-folder stand-in: one ablation, the paper setting at 3 seeds and a variant at
    `seeds`, FVD-md as given (+-10 intervals), every run well above noise level."""

    def rows(label, values, seeds):
        return [dict(ablation="renoise", variant=label, seed=s, n=1024, data="d", run=f"r{s}",
                     **{"FVD-md": v, "FVD-md-lo": v - 10, "FVD-md-hi": v + 10,
                        "PA-md-digit": 0.8, "motion-gap": 0.1, "motion-gap-lo": 0.09,
                        "motion-gap-hi": 0.11}) for s, v in zip(seeds, values)]  # fmt: skip

    table = pd.DataFrame(rows(PAPER, paper, (0, 1, 2)) + rows("off", variant, seeds))
    ref = {"real": {"FVD-md": 50.0}, "noise": {"FVD-md": 1e5},
           "chance": {"PA-md-digit": 0.1}}  # fmt: skip
    variants = [
        dict(label=PAPER, changes={}, status="ran", reason=""),
        dict(label="off", changes={"renoise": "off"}, status="ran", reason=""),
    ]
    return dict(registry=dict(scale="cpu", ablations=[dict(name="renoise", about="",
                                                            variants=variants)]),
                table=table, curves=pd.DataFrame(columns=["ablation", "variant", "seed"]),
                refs={"d": ref}, speed=pd.DataFrame(), strips={})  # fmt: skip


def test_verdicts_are_the_known_answers_of_the_paired_rule():
    worse = ablation_report.judge(_files([100, 120, 110], [160, 185, 165])).set_index("variant")
    assert worse.loc["off", "verdict"] == "worse" and worse.loc["off", "seeds"] == "0 1 2"
    assert worse.loc["off", "verdict_gap"] == pytest.approx(60)
    assert (worse.loc["off", "verdict_lo"], worse.loc["off", "verdict_hi"]) == pytest.approx(
        (51.571, 68.429), abs=1e-3)  # fmt: skip
    assert worse.loc[PAPER, "FVD-md_seed_spread"] == pytest.approx(10)
    noise = ablation_report.judge(_files([100, 120, 110], [105, 110, 125])).set_index("variant")
    assert noise.loc["off", "verdict"] == "within noise"
    assert noise.loc["off", "verdict_mde"] == pytest.approx(28.92, abs=0.01)
    assert noise.loc["off", "verdict_mde_share"] == pytest.approx(28.92 / 110, abs=1e-4)
    # one seed: both bootstrap widths and the paper setting's spread set the interval
    one = ablation_report.judge(_files([100, 120, 110], [150], seeds=(0,))).set_index("variant")
    assert one.loc["off", "verdict_provisional"] and one.loc["off", "seeds"] == "0"


def test_gpu_commands_name_every_variant_with_its_cost_or_why_not():
    """`ablate --commands CONFIG`: sampling-only variants sample the config's own run, the
    others train their own; costs fall with K; what the config cannot take says why."""
    from harness.studies.ablations.commands import commands_table

    rows = {
        (r["ablation"], r["variant"]): r
        for r in commands_table(Path("baselines/gpu/animatediff-tpdiff.toml"), list(ABLATIONS))
    }
    assert "torchrun" not in rows["renoise", "pyramid-flow"]["commands"]
    assert "renoise=pyramid-flow" in rows["renoise", "pyramid-flow"]["commands"]
    assert "torchrun" in rows["stages_16f", "K=5"]["commands"]
    assert "num_stages=5" in rows["stages_16f", "K=5"]["commands"]
    assert "frames=" not in rows["stages_16f", "K=5"]["commands"]  # the config's own 16 frames
    cost = [
        float(rows[name, k]["train_tflops_per_sample_step"].lstrip("~"))
        for name, k in (("stages", "K=1"), ("stages", "K=2"), ("stages", PAPER),
                        ("stages", "K=4"), ("stages_16f", "K=5"))
    ]  # fmt: skip
    assert cost == sorted(cost, reverse=True)
    assert rows["stages_16f", "K=5"]["sample_tflops_per_video"].startswith("~")  # scaled
    assert rows["stages", PAPER]["sample_tflops_per_video"] == "72"  # 10 x (1.03 + 2.05 + 4.11)
    assert rows["form", "ddim"]["commands"].startswith("the config's own setting")
    assert "form=ddim" in rows["form", "ddim-v"]["commands"]  # why not, and the fix
    wan = {
        (r["ablation"], r["variant"]): r
        for r in commands_table(Path("baselines/gpu/wan-tpdiff.toml"), ["stages"])
    }
    assert "frames=61" in wan["stages", "K=4"]["commands"]


def test_registry_marks_rows_scored_with_other_changes_or_runs_as_stale(tmp_path):
    run = trials.trial_config(SCALES["tiny"], tmp_path).name  # the paper setting's run here
    other = trials.trial_config(SCALES["smoke"], tmp_path).name  # another scale's
    linear = json.dumps({"upsample": "linear"})
    table = pd.DataFrame([
        dict(ablation="renoise", variant=PAPER, seed=0, changes="{}", run=run),
        dict(ablation="renoise", variant=PAPER, seed=1, changes="{}", run=f"{run}-seed1"),
        dict(ablation="renoise", variant="off", seed=0, changes=json.dumps({"renoise": False}),
             run=run),
        dict(ablation="upsample", variant="linear", seed=0, changes=linear, run=other),
    ])  # fmt: skip
    found = ablate.registry(SCALES["tiny"], tmp_path, table)
    entry = {(a["name"], v["label"]): v for a in found for v in a["variants"]}
    assert entry["renoise", PAPER]["status"] == "ran" and entry["renoise", PAPER]["seeds"] == [0, 1]
    assert entry["renoise", "off"]["status"] == "stale"  # the registry now says renoise="off"
    assert entry["upsample", "linear"]["status"] == "stale"  # scored on another scale's run
    assert other in entry["upsample", "linear"]["reason"]
    assert entry["renoise", "pyramid-flow"]["status"] == "not run"
    assert entry["stages_16f", "K=5"]["changes"] == {"frames": 16, "num_stages": 5}
    assert [a["name"] for a in found] == list(ABLATIONS)


@pytest.mark.slow
def test_a_torn_ablations_folder_is_refused_in_one_line_and_nothing_is_written(
    renoise_folder, tmp_path
):
    folder = tmp_path / "ablations"
    shutil.copytree(renoise_folder[0], folder, ignore=shutil.ignore_patterns("runs", "cache"))
    cut(folder / "renoise" / "table.csv")
    before = folder_bytes(folder)
    with pytest.raises(SystemExit) as exit_:
        report.main([str(folder)])
    assert exit_.value.code == 2
    assert folder_bytes(folder) == before


@pytest.mark.slow
@pytest.mark.parametrize("case", ["final without curve", "torn strips", "bad registry",
                                  "mixed n"])  # fmt: skip
def test_an_inconsistent_ablations_folder_is_named(renoise_folder, tmp_path, case):
    folder = tmp_path / "ablations"
    shutil.copytree(renoise_folder[0], folder, ignore=shutil.ignore_patterns("runs", "cache"))
    if case == "final without curve":
        curves = pd.read_csv(folder / "renoise" / "curves.csv")
        keep = ~((curves["variant"] == "off") & (curves["seed"] == 1))
        curves[keep].to_csv(folder / "renoise" / "curves.csv", index=False)
        message = r"final scores without curves.csv rows for \['renoise/off seed 1'\]"
    elif case == "torn strips":
        cut(folder / "strips.pt", 1000)
        message = r"strips.pt is not a readable saved results file"
    elif case == "mixed n":  # a row scored at another scale's n
        table = pd.read_csv(folder / "renoise" / "table.csv")
        table.loc[table.index[-1], "n"] = 2 * table["n"].max()
        table.to_csv(folder / "renoise" / "table.csv", index=False)
        message = r"mixes final scores at n = \[8, 16\]"
    else:
        (folder / "ablations.json").write_text(json.dumps({"ablations": [{"name": "seed"}]}))
        message = r"ablations.json is not a registry"
    before = folder_bytes(folder)
    with pytest.raises(ValueError, match=message):
        ablation_report.build(folder)
    assert folder_bytes(folder) == before


@pytest.mark.slow
def test_a_failure_while_drawing_ablations_leaves_the_folder_as_it_was(
    renoise_folder, tmp_path, monkeypatch
):
    folder = tmp_path / "ablations"
    shutil.copytree(renoise_folder[0], folder, ignore=shutil.ignore_patterns("runs", "cache"))
    (folder / "summary.json").unlink()  # an output missing before: must stay missing
    before = folder_bytes(folder)

    def plot_fails(*args, **kwargs):
        raise RuntimeError("the disk filled up")

    monkeypatch.setattr(ablation_report, "plot_ablation", plot_fails)
    with pytest.raises(RuntimeError, match="disk filled up"):
        ablation_report.build(folder)
    assert folder_bytes(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ablations.lock", "ablations"]


def test_the_cli_refuses_bad_input_in_one_line_with_exit_2(tmp_path, capsys):
    from harness.studies.ablations import cli

    def refused(*argv) -> str:
        with pytest.raises(SystemExit) as stop:
            cli.main(list(argv))
        assert stop.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        return err

    assert "unknown ablation(s) ['nope']" in refused("nope", "--out", str(tmp_path / "a"))
    assert "--workers must be at least 1" in refused("renoise", "--workers", "0",
                                                    "--out", str(tmp_path / "b"))  # fmt: skip
    torn = tmp_path / "c"
    torn.mkdir()
    (torn / "ablations.json").write_text('{"scale": "ti')
    assert "ablations.json is unreadable" in refused("renoise", "--out", str(torn))
    (torn / "ablations.json").write_text('{"scale": "cpu"}')
    assert "at scale cpu, not tiny" in refused("renoise", "--scale", "tiny", "--out", str(torn))
    assert (torn / "ablations.json").read_text() == '{"scale": "cpu"}'  # nothing destroyed

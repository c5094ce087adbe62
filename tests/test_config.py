from pathlib import Path

import pytest

from harness.common.config import METHOD_FIELDS, Config
from harness.pipeline.build import plan_for

BASELINES = Path(__file__).resolve().parent.parent / "baselines"


def test_overrides_are_parsed_by_type():
    cfg = Config().override(
        [
            "steps=12",
            "lr=1e-3",
            "align=false",
            "jump_points=0.7, 0.4",
            "stage_steps=5,5,20",
            "name=x",
        ]
    )
    assert cfg.steps == 12 and cfg.lr == 1e-3 and cfg.align is False and cfg.name == "x"
    assert cfg.jump_points == (0.7, 0.4) and cfg.stage_steps == (5, 5, 20)
    assert Config(num_stages=2).replace(jump_points=[0.5]).jump_points == (0.5,)


@pytest.mark.parametrize(
    "item,message",
    [
        ("stepz=3", "unknown config key 'stepz'; valid keys: name, out_dir"),
        ("steps=ten", "'steps' expects int, got 'ten'"),
        ("steps=2.5", "'steps' expects int"),
        ("align=maybe", "'align' expects bool"),
        ("jump_points=0.7,x", "'jump_points' expects comma-separated float values, got '0.7,x'"),
        ("method=fast", "method must be one of"),
        ("form=edm", "unknown form 'edm'"),
        ("steps", "is not key=value"),
        ("jump_points=0.5", "has 1 entries but num_stages=3 needs 2"),
        ("stage_steps=10,20", "has 2 entries but num_stages=3 needs one per stage"),
        ("ckpt_every=0", "ckpt_every must be >= 1"),
        ("num_stages=0", "num_stages must be >= 1"),
    ],
)
def test_bad_overrides_fail_loudly(item, message):
    with pytest.raises(ValueError, match=message):
        Config().override([item])


def test_config_round_trips():
    cfg = Config().override(["jump_points=0.8,0.3", "method=tpdiff", "steps=7"])
    assert Config.from_dict(cfg.to_dict()) == cfg


def test_plans_from_config():
    assert plan_for(Config(method="vanilla")).steps == (30,)
    plan = plan_for(Config())
    assert plan.steps == (10, 10, 10) and plan.jump_points == pytest.approx((2 / 3, 1 / 3))
    plan = plan_for(Config(num_stages=2, jump_points=(0.6,), stage_steps=(4, 11)))
    assert plan.steps == (4, 11) and [s.frames for s in plan.stages] == [8, 16]
    with pytest.raises(ValueError, match="not divisible by 2\\^\\(K-1\\)=8"):
        plan_for(Config(num_stages=4, frames=12))


def test_non_finite_or_negative_rates_are_refused():
    for key, value in (("lr", "nan"), ("lr", "inf"), ("weight_decay", "-1"), ("grad_clip", "nan")):
        with pytest.raises(ValueError, match=f"{key} must be a finite number >= 0, got"):
            Config().override([f"{key}={value}"])
    with pytest.raises(ValueError, match="lr must be > 0"):
        Config(lr=0.0)
    with pytest.raises(ValueError, match="ema_decay < 1"):
        Config(ema_decay=1.0)


@pytest.mark.parametrize("backbone", ["dit", "unet"])
def test_baseline_pairs_differ_only_in_method_fields(backbone):
    vanilla = Config.from_file(BASELINES / f"{backbone}-vanilla.toml")
    tpdiff = Config.from_file(BASELINES / f"{backbone}-tpdiff.toml")
    a, b = vanilla.to_dict(), tpdiff.to_dict()
    differing = {k for k in a if a[k] != b[k]}
    assert differing <= set(METHOD_FIELDS), differing - set(METHOD_FIELDS)
    assert vanilla.method == "vanilla" and tpdiff.method == "tpdiff"
    assert plan_for(vanilla).num_stages == 1 and plan_for(tpdiff).num_stages == 3
    assert plan_for(vanilla).total_steps == plan_for(tpdiff).total_steps
    assert vanilla.backbone == backbone


def test_every_baseline_file_loads():
    files = sorted(BASELINES.glob("*.toml"))
    assert len(files) >= 4
    for path in files:
        cfg = Config.from_file(path)
        assert cfg.name == path.stem

import json

import pandas as pd
import pytest

from harness.studies.suites.cli import main


def test_engine_suite_writes_a_passing_report(tmp_path, capsys):
    assert main(["--suite", "engine", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] and summary["oracle_max_error"] < 1e-4
    checks = pd.read_csv(tmp_path / "checks.csv")
    assert len(checks) == 3 * 2 * 4  # forms x upsample modes x K
    plans = pd.read_csv(tmp_path / "plans.csv")
    assert set(plans.K) == {1, 2, 3, 4} and (plans.u_start > plans.u_end).all()
    assert "Engine self-check" in (tmp_path / "report.md").read_text()
    assert not list(tmp_path.glob(".*.tmp")), "atomic writes leave no temporary files"


def test_unknown_suite_lists_the_valid_ones(capsys):
    with pytest.raises(SystemExit):
        main(["--suite", "papr"])
    assert "invalid choice: 'papr'" in capsys.readouterr().err

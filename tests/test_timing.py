import pytest

from harness.measure.timing import measure


def test_measure_runs_warmup_then_repeats_and_summarises():
    calls = []
    t = measure(lambda: calls.append(1), "cpu", warmup=2, repeats=7)
    assert len(calls) == 9
    assert t.repeats == 7 and t.min_s <= t.median_s <= t.max_s
    assert t.spread >= 0 and t.peak_memory > 0 and t.device == "cpu"


def test_measure_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        measure(lambda: None, repeats=0)

import pytest

from harness.common.io import write_json, write_text


def test_failed_write_keeps_the_earlier_result(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    write_json(path, {"speedup": 1.7})
    before = path.read_text()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("harness.common.io.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"speedup": 0.1})
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_write_text_creates_folders(tmp_path):
    path = write_text(tmp_path / "a" / "b" / "report.md", "# hi\n")
    assert path.read_text() == "# hi\n"

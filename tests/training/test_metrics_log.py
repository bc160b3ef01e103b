import csv
import sys

import pytest

from lightly_siamese_ext.training import MetricsLog


def test_rows_are_written_and_truncated_on_resume(tmp_path) -> None:
    log = MetricsLog(tmp_path / "metrics.csv")
    for epoch in range(1, 4):
        log.append({"epoch": epoch, "loss": -0.1 * epoch, "knn_top1": None if epoch < 3 else 0.5})
    with (tmp_path / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and rows[0]["knn_top1"] == ""
    reopened = MetricsLog(tmp_path / "metrics.csv")
    reopened.truncate(2)
    reopened.append({"epoch": 3, "loss": -0.3, "knn_top1": 0.6})
    assert MetricsLog(tmp_path / "metrics.csv").column("knn_top1")[2] == pytest.approx(0.6)
    assert len(MetricsLog(tmp_path / "metrics.csv").rows) == 3


def test_bad_rows_are_rejected(tmp_path) -> None:
    log = MetricsLog(tmp_path / "m.csv")
    with pytest.raises(ValueError, match="epoch"):
        log.append({"loss": 1.0})
    log.append({"epoch": 1, "loss": 1.0})
    with pytest.raises(ValueError, match="columns"):
        log.append({"epoch": 2, "acc": 1.0})


def test_plot_writes_a_png(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    log = MetricsLog(tmp_path / "m.csv")
    for epoch in range(1, 4):
        log.append({"epoch": epoch, "loss": 1.0 / epoch, "knn_top1": None})
    path = log.plot(tmp_path / "m.png", ["loss", "knn_top1"])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_warns_and_keeps_the_csv(tmp_path, monkeypatch) -> None:
    for name in ("matplotlib", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)  # a None entry makes `import` raise ImportError
    log = MetricsLog(tmp_path / "m.csv")
    log.append({"epoch": 1, "loss": 1.0})
    with pytest.warns(RuntimeWarning, match="matplotlib is not installed"):
        assert log.plot(tmp_path / "m.png", ["loss"]) is None
    assert not (tmp_path / "m.png").exists() and (tmp_path / "m.csv").exists()

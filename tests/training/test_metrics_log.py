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


def _written(tmp_path, epochs: int = 3):
    log = MetricsLog(tmp_path / "metrics.csv")
    for epoch in range(1, epochs + 1):
        log.append({"epoch": epoch, "loss": -0.1 * epoch, "lr": 0.0015 * epoch})
    return tmp_path / "metrics.csv"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text: text[:-8], "ends without a line end"),  # a row cut while being written: "lr" read as 0.0
        (lambda text: text.split("\n")[0][:9], "ends without a line end"),  # a header cut: "epoch,los"
        (lambda text: "", "it is empty"),
        (lambda text: text.replace("-0.2,", "-0.2,0.5,"), "line 3 has 4 fields, the header 3"),
        (lambda text: text.replace("\n3,", "\n1,"), "line 4 has epoch '1' after epoch 2"),
        (lambda text: text.replace("epoch,", "epoc,"), "not a header with unique names and an 'epoch' column"),
        (lambda text: text[:20] + "\0" + text[20:], "line 2 holds NUL bytes"),
    ],
    ids=["torn row", "torn header", "empty", "extra field", "epoch out of order", "no epoch column", "NUL byte"],
)
def test_a_torn_or_corrupt_file_is_refused_with_its_line(tmp_path, damage, message: str) -> None:
    path = _written(tmp_path)
    path.write_bytes(damage(path.read_bytes().decode()).encode())
    with pytest.raises(ValueError, match=f"metrics.csv is torn or corrupt: .*{message}"):
        MetricsLog(path)


def test_every_write_replaces_the_whole_file(tmp_path, monkeypatch) -> None:
    path = _written(tmp_path, epochs=2)
    before = path.read_bytes()
    log = MetricsLog(path)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    import lightly_siamese_ext.training.metrics_log as metrics_log

    monkeypatch.setattr(metrics_log, "write_text_atomically", full_disk)
    with pytest.raises(OSError):
        log.append({"epoch": 3, "loss": -0.3, "lr": 0.0045})
    assert path.read_bytes() == before  # not a half-appended row

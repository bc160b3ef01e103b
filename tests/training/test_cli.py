import io

import pytest

from lightly_siamese_ext.training.cli import embedded_data_notice, run_cli


@pytest.mark.parametrize("error", [ValueError("bad --x\nsecond line"), FileNotFoundError("bad --x"),
                                   NotADirectoryError("bad --x")])
def test_user_errors_become_one_line_and_status_2(error: Exception) -> None:
    def fail() -> None:
        raise error

    stderr = io.StringIO()
    assert run_cli(fail, stderr=stderr) == 2
    assert stderr.getvalue() == "error: bad --x\n"


def test_success_and_bugs() -> None:
    assert run_cli(lambda: None) == 0
    with pytest.raises(KeyError):  # not a user error: keeps its traceback
        run_cli(lambda: {}["missing"])


def test_embedded_notice_is_loud_and_names_the_run() -> None:
    text = embedded_data_notice("a SMOKE RUN (3 epochs)")
    assert "EMBEDDED scikit-learn digits" in text and "a SMOKE RUN (3 epochs)" in text
    assert text.startswith("!" * 78)

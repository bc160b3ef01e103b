import errno
import os

import pytest
import torch
import torch.nn as nn

from lightly_siamese_ext.training import save_checkpoint
from lightly_siamese_ext._atomic import write_atomically, write_text_atomically


def _leftovers(folder) -> list:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path) -> None:
    target = tmp_path / "sub" / "summary.json"
    assert write_text_atomically(target, "first") == target
    write_text_atomically(target, "second")
    assert target.read_text() == "second" and _leftovers(target.parent) == []


def test_the_new_file_gets_the_mode_a_plain_open_would_give(tmp_path) -> None:
    umask = os.umask(0o022)
    try:
        write_text_atomically(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644  # mkstemp's would be 0o600


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_previous_file_and_no_temporary_file(tmp_path, failure: BaseException) -> None:
    target = tmp_path / "metrics.csv"
    target.write_text("epoch\n1\n")

    def write_half_then_fail(handle) -> None:
        handle.write(b"epoch\n1\n2")
        raise failure

    with pytest.raises(type(failure)) as caught:
        write_atomically(target, write_half_then_fail)
    assert target.read_text() == "epoch\n1\n" and _leftovers(tmp_path) == []
    if isinstance(failure, OSError):  # named: the user learns which file and why
        assert caught.value.errno == errno.ENOSPC and f"could not write {target}" in str(caught.value)


def test_a_full_disk_under_torch_save_is_an_os_error_naming_the_checkpoint(tmp_path, monkeypatch) -> None:
    # torch's serialiser reports the OSError of its file object as "RuntimeError: ... unexpected pos".
    real_save = torch.save

    def save_until_the_disk_is_full(payload, handle) -> None:
        class FullDisk:
            def write(self, data) -> int:
                raise OSError(errno.ENOSPC, "No space left on device")

            def flush(self) -> None:
                pass

        real_save(payload, FullDisk())

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    with pytest.raises(OSError, match=r"could not write .*last.pt: No space left on device") as caught:
        save_checkpoint(tmp_path / "last.pt", model=nn.Linear(200, 200), epoch=1)
    assert caught.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == []


def test_a_write_into_a_missing_folder_creates_it(tmp_path) -> None:
    save_checkpoint(tmp_path / "a" / "b" / "last.pt", model=nn.Linear(2, 2), epoch=3)
    assert torch.load(tmp_path / "a" / "b" / "last.pt", weights_only=True)["epoch"] == 3

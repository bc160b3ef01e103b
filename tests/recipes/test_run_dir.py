import pytest
import torch
import torch.nn as nn

from _run_dir import prepare_run_dir
from lightly_siamese_ext.training import save_checkpoint


def test_fresh_run_creates_the_folder_and_starts_at_epoch_0(tmp_path) -> None:
    path, epoch = prepare_run_dir(tmp_path / "a" / "b", resume=False)
    assert (tmp_path / "a" / "b").is_dir() and path == tmp_path / "a" / "b" / "last.pt" and epoch == 0


def test_resume_restores_the_model_and_returns_its_epoch(tmp_path) -> None:
    saved = nn.Linear(3, 2)
    save_checkpoint(tmp_path / "last.pt", model=saved, epoch=7)
    model = nn.Linear(3, 2)
    path, epoch = prepare_run_dir(tmp_path, resume=True, model=model, restore_rng=False)
    assert epoch == 7 and path == tmp_path / "last.pt"
    torch.testing.assert_close(model.weight, saved.weight, rtol=0, atol=0)


def test_resume_without_a_checkpoint_names_it(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint at .*last.pt"):
        prepare_run_dir(tmp_path, resume=True, model=nn.Linear(1, 1))


def test_an_out_dir_that_is_a_file_is_named(tmp_path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="--out-dir .*file is a file, not a folder"):
        prepare_run_dir(tmp_path / "file", resume=False)


@pytest.mark.parametrize("content, message", [(b"garbage", "is not a readable checkpoint"),
                                              ({"weights": 1}, "is not a training checkpoint")])
def test_resume_from_a_file_that_is_not_a_checkpoint_is_a_value_error(tmp_path, content, message: str) -> None:
    if isinstance(content, bytes):
        (tmp_path / "last.pt").write_bytes(content)
    else:
        torch.save(content, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=f"--resume: .*last.pt {message}"):
        prepare_run_dir(tmp_path, resume=True, model=nn.Linear(1, 1))


def test_resume_into_a_model_that_does_not_fit_is_a_value_error(tmp_path) -> None:
    save_checkpoint(tmp_path / "last.pt", model=nn.Linear(3, 2), epoch=1)
    with pytest.raises(ValueError, match="does not fit this run's model or optimizer: .*size mismatch for weight"):
        prepare_run_dir(tmp_path, resume=True, model=nn.Linear(4, 2), restore_rng=False)


def test_resume_refuses_other_training_arguments_and_allows_the_listed_ones(tmp_path) -> None:
    saved = {"epochs": 3, "lr": 0.1, "device": "cpu", "out_dir": "/elsewhere"}
    save_checkpoint(tmp_path / "last.pt", model=nn.Linear(3, 2), epoch=1, extra={"args": saved})
    may_change = ("device", "out_dir")
    with pytest.raises(ValueError, match=r"trained with --epochs 3 \(now 5\), --lr 0.1 \(now 0.2\); a resumed run"):
        prepare_run_dir(tmp_path, resume=True, run_args={**saved, "epochs": 5, "lr": 0.2}, may_change=may_change,
                        model=nn.Linear(3, 2), restore_rng=False)
    changed = {**saved, "device": "cuda", "out_dir": str(tmp_path), "new_argument": 1}  # an older checkpoint lacks it
    _, epoch = prepare_run_dir(tmp_path, resume=True, run_args=changed, may_change=may_change,
                               model=nn.Linear(3, 2), restore_rng=False)
    assert epoch == 1

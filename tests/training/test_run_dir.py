import pytest
import torch
import torch.nn as nn

from lightly_siamese_ext.training import save_checkpoint
from lightly_siamese_ext.training.run_dir import prepare_run_dir


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

import random

import numpy as np
import pytest
import torch
import torch.nn as nn

from lightly_siamese_ext import SimSiam, epoch_cosine_scheduler
from lightly_siamese_ext.training import load_checkpoint, save_checkpoint, simsiam_train_step
from lightly_siamese_ext.training.checkpoint import capture_rng_state, restore_rng_state


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = SimSiam(backbone, proj_dim=8, pred_hidden_dim=4)
    optimizer = torch.optim.SGD(model.parameter_groups(fix_predictor_lr=True), lr=0.1, momentum=0.9)
    scheduler = epoch_cosine_scheduler(optimizer, 6, warmup_epochs=1)
    generator = torch.Generator().manual_seed(seed)
    return model, optimizer, scheduler, generator


def _epoch(model, optimizer, scheduler, generator) -> None:
    for _ in range(2):
        x = torch.rand(4, 3, 8, 8, generator=generator)
        noise = torch.randn(2, 4, 3, 8, 8)  # global RNG: restored too
        simsiam_train_step(model, x + 0.1 * noise[0], x + 0.1 * noise[1], optimizer)
    scheduler.step()


def test_kill_and_resume_reproduces_the_straight_run(tmp_path) -> None:
    straight = _setup()
    for _ in range(3):
        _epoch(*straight)

    first = _setup()
    _epoch(*first)
    model, optimizer, scheduler, generator = first
    save_checkpoint(tmp_path / "last.pt", model=model, epoch=1, optimizer=optimizer, scheduler=scheduler,
                    generators={"augment": generator})
    torch.manual_seed(123)  # a new process starts with other random states
    resumed = _setup(seed=99)
    payload = load_checkpoint(tmp_path / "last.pt", model=resumed[0], optimizer=resumed[1], scheduler=resumed[2],
                              generators={"augment": resumed[3]})
    assert payload["epoch"] == 1
    for _ in range(2):
        _epoch(*resumed)
    for a, b in zip(straight[0].state_dict().values(), resumed[0].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [g["lr"] for g in straight[1].param_groups] == [g["lr"] for g in resumed[1].param_groups]


def test_checkpoint_loads_with_weights_only_and_restores_global_rngs(tmp_path) -> None:
    model, optimizer, scheduler, generator = _setup()
    path = save_checkpoint(tmp_path / "c.pt", model=model, epoch=4, optimizer=optimizer, scheduler=scheduler,
                           extra={"args": {"lr": 0.1, "backbone": "x"}})
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    payload = torch.load(path, weights_only=True)
    assert payload["epoch"] == 4 and payload["extra"]["args"]["backbone"] == "x"
    load_checkpoint(path, model=model)
    got = (random.random(), float(np.random.rand()), torch.rand(3))
    assert expected[:2] == got[:2]
    torch.testing.assert_close(expected[2], got[2])
    assert not (tmp_path / "c.pt.tmp").exists()


def test_missing_generator_state_is_an_error(tmp_path) -> None:
    model, *_ = _setup()
    save_checkpoint(tmp_path / "c.pt", model=model, epoch=0)
    with pytest.raises(KeyError):
        load_checkpoint(tmp_path / "c.pt", model=model, generators={"augment": torch.Generator()})


class _OnAnotherDevice:
    """Stands in for a state tensor that ``map_location="cuda"`` put on a GPU: torch's RNG setters (CUDA
    generators' included) take it only after ``.cpu()``."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self._tensor = tensor

    def cpu(self) -> torch.Tensor:
        return self._tensor


def test_rng_states_loaded_onto_another_device_are_moved_back_before_restoring() -> None:
    generator = torch.Generator().manual_seed(5)
    state = capture_rng_state({"augment": generator})
    expected = (random.random(), float(np.random.rand()), torch.rand(3), torch.rand(3, generator=generator))
    state["torch"] = _OnAnotherDevice(state["torch"])
    state["numpy"][1] = _OnAnotherDevice(state["numpy"][1])
    state["generators"]["augment"] = _OnAnotherDevice(state["generators"]["augment"])
    restore_rng_state(state, {"augment": generator})
    got = (random.random(), float(np.random.rand()), torch.rand(3), torch.rand(3, generator=generator))
    assert expected[:2] == got[:2]
    torch.testing.assert_close(expected[2:], got[2:], rtol=0, atol=0)


@pytest.mark.parametrize(
    "wrap",
    [lambda m: nn.DataParallel(torch.compile(m)), lambda m: torch.compile(nn.DataParallel(m))],
    ids=["parallel(compile)", "compile(parallel)"],
)
def test_nested_compile_and_parallel_wrappers_save_and_load_the_plain_state(tmp_path, wrap) -> None:
    torch.manual_seed(0)
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    save_checkpoint(tmp_path / "c.pt", model=wrap(source), epoch=1)
    assert set(torch.load(tmp_path / "c.pt", weights_only=True)["model"]) == {"weight", "bias"}
    load_checkpoint(tmp_path / "c.pt", model=wrap(target))
    torch.testing.assert_close(target.state_dict(), source.state_dict(), rtol=0, atol=0)


@pytest.mark.parametrize("missing", ["optimizer", "scheduler"])
def test_a_checkpoint_without_the_state_a_run_restores_is_refused(tmp_path, missing: str) -> None:
    # Restoring the weights alone would continue with fresh momentum or a restarted schedule: another run.
    model, optimizer, scheduler, _ = _setup()
    kept = {"optimizer": optimizer, "scheduler": scheduler}
    kept[missing] = None
    save_checkpoint(tmp_path / "c.pt", model=model, epoch=1, **kept)
    with pytest.raises(ValueError, match=f"the checkpoint holds no {missing} state"):
        load_checkpoint(tmp_path / "c.pt", model=model, optimizer=optimizer, scheduler=scheduler)
    load_checkpoint(tmp_path / "c.pt", model=model, **{k: v for k, v in kept.items() if v is not None})

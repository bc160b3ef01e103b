import math

import pytest
import torch
import torch.nn as nn
from lightly.utils.scheduler import cosine_warmup_schedule

from lightly_siamese_ext import SimSiam, epoch_cosine_scheduler


def _rates(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler, epochs: int) -> list:
    """The rates each epoch trains at (read before the epoch's scheduler.step()), per parameter group."""
    trained_at = []
    for _ in range(epochs):
        trained_at.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return trained_at


def test_the_papers_per_epoch_cosine_never_wastes_the_last_epoch() -> None:
    epochs, base = 4, 0.2
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base)
    trained_at = [rates[0] for rates in _rates(optimizer, epoch_cosine_scheduler(optimizer, epochs), epochs)]
    # SimSiam's adjust_learning_rate: init_lr * 0.5 * (1 + cos(pi * epoch / epochs)), epoch = 0 .. epochs - 1
    expected = [base * 0.5 * (1 + math.cos(math.pi * e / epochs)) for e in range(epochs)]
    assert trained_at == pytest.approx(expected, rel=1e-12)
    assert min(trained_at) > 0.1 * base


@pytest.mark.parametrize("epochs, warmup, end", [(10, 3, 0.0), (6, 1, 0.001), (5, 5, 0.0), (7, 0, 0.1)])
def test_warmup_and_end_value_follow_lightlys_cosine_warmup_schedule(epochs: int, warmup: int, end: float) -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    got = [rates[0] for rates in _rates(optimizer, epoch_cosine_scheduler(optimizer, epochs, warmup, end), epochs)]
    # lightly's schedule over epochs + 1 steps is the one whose last trained epoch is still above end_value.
    expected = [cosine_warmup_schedule(e, epochs + 1, 1.0, end, warmup, 0.0) for e in range(epochs)]
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_fixed_lr_groups_stay_fixed_while_the_encoder_decays() -> None:
    torch.manual_seed(0)
    model = SimSiam(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()), proj_dim=8,
                    pred_hidden_dim=4)
    optimizer = torch.optim.SGD(model.parameter_groups(fix_predictor_lr=True), lr=0.1)
    rates = _rates(optimizer, epoch_cosine_scheduler(optimizer, 5, warmup_epochs=2), 5)
    encoder = [epoch[0] for epoch in rates]
    assert encoder[:2] == pytest.approx([0.05, 0.1]) and encoder[2:] == sorted(encoder[2:], reverse=True)
    assert all(epoch[1] == 0.1 for epoch in rates)  # the predictor group carries fix_lr=True


def test_a_restored_schedule_continues_where_it_stopped() -> None:
    def fresh() -> tuple:
        optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.3)
        return optimizer, epoch_cosine_scheduler(optimizer, 8, warmup_epochs=2)

    optimizer, scheduler = fresh()
    straight = _rates(optimizer, scheduler, 8)
    optimizer, scheduler = fresh()
    first = _rates(optimizer, scheduler, 3)
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    optimizer, scheduler = fresh()
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    assert first + _rates(optimizer, scheduler, 5) == straight


@pytest.mark.parametrize("kwargs, error", [({"epochs": 0}, ValueError), ({"epochs": 2.0}, TypeError),
                                           ({"epochs": 3, "warmup_epochs": 4}, ValueError),
                                           ({"epochs": 3, "warmup_epochs": -1}, ValueError),
                                           ({"epochs": 3, "end_value": float("nan")}, ValueError)])
def test_bad_arguments_are_named(kwargs: dict, error: type) -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    name = next(key for key in ("warmup_epochs", "end_value", "epochs") if key in kwargs)
    with pytest.raises(error, match=f"^{name} must be"):
        epoch_cosine_scheduler(optimizer, **kwargs)

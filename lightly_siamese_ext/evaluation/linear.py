"""Linear probe on frozen, precomputed features: the standard linear evaluation of a self-supervised encoder."""

from __future__ import annotations

import math
from typing import Any, Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from lightly.utils.scheduler import CosineWarmupScheduler
from torch import Tensor

from lightly_siamese_ext._validation import (
    check_embeddings,
    check_finite,
    check_float,
    check_labels,
    check_non_empty,
    check_positive_int,
    check_same_dim,
    topk_within,
)
from lightly_siamese_ext.evaluation._common import topk_hits

__all__ = ["linear_probe"]


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    num_classes: int,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 0.1,
    weight_decay: float = 0.0,
    seed: int = 0,
    topk: Sequence[int] = (1, 5),
) -> Dict[str, Any]:
    """Trains a linear classifier on frozen features and reports its test top-k accuracy.

    The recipe of lightly's ``LinearClassifier`` (SGD with momentum 0.9, learning rate ``lr * batch_size / 256``
    as in its ``get_effective_lr``, lightly's ``CosineWarmupScheduler`` stepped every batch, no warmup), on features
    standardised with the training set's statistics, as MAE's linear probe does with a ``BatchNorm1d`` without
    affine parameters: the classifier returned is ``BatchNorm1d(affine=False)`` holding those statistics followed
    by the ``nn.Linear``, so it applies to raw features. Runs on the device of ``train_features``; deterministic
    for a ``seed`` (weight init and shuffling use their own ``torch.Generator``, not the global RNG).

    Args:
        train_features: Frozen features (N, D) to train on.
        train_labels: Integer labels (N,) in ``[0, num_classes)``.
        test_features: Features (M, D) to evaluate on.
        test_labels: Integer labels (M,).
        num_classes: Number of classes C.
        epochs: Passes over the training features.
        batch_size: Mini-batch size (the last, smaller batch of an epoch is kept).
        lr: Base learning rate, for a batch size of 256.
        weight_decay: SGD weight decay.
        seed: Seeds the weight init and the shuffling.
        topk: Accuracies to report; entries larger than ``num_classes`` are skipped.

    Returns:
        ``{"top1": float, "top5": float, "train_loss": float (mean over the last epoch),
        "classifier": nn.Sequential (eval mode, on the features' device)}``.
    """
    for features, name in ((train_features, "train_features"), (test_features, "test_features")):
        check_finite(check_non_empty(check_embeddings(features, name), name), name)
    check_same_dim(train_features, test_features, "train_features and test_features")
    train_labels = check_labels(train_labels, "train_labels", train_features.shape[0], "row of train_features")
    test_labels = check_labels(test_labels, "test_labels", test_features.shape[0], "row of test_features")
    ks = topk_within(topk, num_classes)
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    lr = check_float(lr, "lr", 0.0, exclusive_minimum=True)
    weight_decay = check_float(weight_decay, "weight_decay", 0.0)
    low, high = torch.aminmax(torch.cat([train_labels, test_labels.to(train_labels.device)]))
    if low < 0 or high >= num_classes:
        raise ValueError(f"train_labels and test_labels must lie in [0, {num_classes}), got values in [{low}, {high}]")

    device = train_features.device
    generator = torch.Generator().manual_seed(seed)
    classifier = _standardised_linear(train_features.float(), num_classes, generator)
    standardise, linear = classifier[0], classifier[1]
    with torch.no_grad():
        inputs = standardise(train_features.float())
    targets = train_labels.to(device=device, dtype=torch.long)

    optimizer = torch.optim.SGD(
        linear.parameters(), lr=lr * batch_size / 256, momentum=0.9, weight_decay=weight_decay
    )
    num_samples = inputs.shape[0]
    steps_per_epoch = math.ceil(num_samples / batch_size)
    scheduler = CosineWarmupScheduler(optimizer, warmup_epochs=0, max_epochs=epochs * steps_per_epoch)
    for _ in range(epochs):
        order = torch.randperm(num_samples, generator=generator).to(device)
        epoch_loss = inputs.new_zeros(())
        for start in range(0, num_samples, batch_size):
            batch = order[start : start + batch_size]
            loss = F.cross_entropy(linear(inputs[batch]), targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            epoch_loss += loss.detach() * batch.shape[0]

    with torch.no_grad():
        logits = classifier(test_features.to(device=device, dtype=torch.float32))
        accuracy = topk_hits(logits.topk(max(ks), dim=1).indices, test_labels, ks) / test_labels.shape[0]
        values = torch.cat([accuracy, (epoch_loss / num_samples).double().reshape(1)]).tolist()
    result: Dict[str, Any] = {f"top{k}": value for k, value in zip(ks, values)}
    result["train_loss"] = values[-1]
    result["classifier"] = classifier
    return result


def _standardised_linear(features: Tensor, num_classes: int, generator: torch.Generator) -> nn.Sequential:
    """``BatchNorm1d(affine=False)`` frozen at the statistics of ``features`` (N, D), then an ``nn.Linear``
    initialised as in MAE's probe (weights N(0, 0.01^2) truncated at 2 std, bias 0); both in eval mode."""
    dim = features.shape[1]
    standardise = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
    linear = nn.utils.skip_init(nn.Linear, dim, num_classes)  # nn.Linear's own init would draw from the global RNG
    with torch.no_grad():
        var, mean = torch.var_mean(features, dim=0, unbiased=False)
        standardise.running_mean.copy_(mean)
        standardise.running_var.copy_(var)
        nn.init.trunc_normal_(linear.weight, std=0.01, a=-0.02, b=0.02, generator=generator)
        nn.init.zeros_(linear.bias)
    return nn.Sequential(standardise, linear).to(features.device).eval()

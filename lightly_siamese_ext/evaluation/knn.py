"""Weighted kNN classifier on frozen features, as used to monitor self-supervised learning.

Same classifier as lightly's :func:`lightly.utils.benchmarking.knn_predict` (Wu et al. 2018, "Unsupervised Feature
Learning via Non-Parametric Instance Discrimination": cosine similarity, k=200 neighbours, each voting for its class
with weight ``exp(similarity / temperature)``), computed in query chunks so that memory stays bounded:

- the similarity block of each chunk is written into one reused (chunk, N) buffer;
- votes are summed with ``scatter_add_`` into a (chunk, C) tensor instead of lightly's (chunk * k, C) one-hot
  matrix, which for ImageNet's 1000 classes would be 400 MB per 512 queries (2.2-2.4x lightly's speed at 1,000
  classes on the CPU, the same speed at 10: ``benchmarks/RESULTS.md``).

Predictions equal lightly's up to ties (equal similarities at the k-th neighbour, equal class scores).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from lightly_siamese_ext._validation import (
    check_embeddings,
    check_finite,
    check_float,
    check_int,
    check_labels,
    check_non_empty,
    check_positive_int,
    check_same_dim,
    topk_within,
)
from lightly_siamese_ext.evaluation._common import topk_hits

__all__ = ["extract_features", "knn_accuracy", "knn_predict"]

Batch = Union[Tensor, Sequence[object]]


def knn_predict(
    feature: Tensor,
    feature_bank: Tensor,
    feature_labels: Tensor,
    num_classes: int,
    knn_k: int = 200,
    knn_t: float = 0.1,
    chunk_size: int = 512,
) -> Tensor:
    """lightly's :func:`lightly.utils.benchmarking.knn_predict`, with its arguments and layout, in query chunks.

    As lightly's, the similarity is the raw dot product of ``feature`` and ``feature_bank`` (normalise both first
    for cosine similarity, as lightly recommends), computed here in the bank's dtype on the bank's device.

    Args:
        feature: Features (B, D) to classify.
        feature_bank: Features of the labelled bank, **(D, N)** as in lightly (e.g. ``bank.t()`` of an (N, D) one:
            a view; no copy is made either way).
        feature_labels: Integer labels (N,) in ``[0, num_classes)``.
        num_classes: Number of classes C.
        knn_k: Number of neighbours; at most N.
        knn_t: Vote weight is ``exp(similarity / knn_t)``.
        chunk_size: Queries scored at once. Extra memory is about ``chunk_size * N`` numbers of the bank's dtype
            (100 MB for N = 50,000 at the default 512), plus ``O(chunk_size * (k + C))`` for the
            neighbour search and the votes, plus the (B, C) result.

    Returns:
        Class indices (B, C), int64, sorted by kNN score, best first: ``[:, 0]`` is the top-1 prediction.
    """
    bank = check_embeddings(feature_bank, "feature_bank").t()  # (N, D), a view
    out: Optional[Tensor] = None
    chunks = _predict_chunks(feature, bank, feature_labels, num_classes, knn_k, knn_t, chunk_size, normalize=False,
                             names=("feature", "feature_bank", "column of feature_bank", "feature_labels", "knn_k", "knn_t"))
    for start, predictions in chunks:
        if out is None:
            out = predictions.new_empty(feature.shape[0], num_classes)
        out[start : start + predictions.shape[0]] = predictions
    assert out is not None  # feature has at least one row (checked)
    return out


def knn_accuracy(
    query: Tensor,
    query_labels: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 512,
    normalize: bool = True,
    topk: Sequence[int] = (1, 5),
) -> Dict[str, float]:
    """kNN top-k accuracy of ``query`` (Q, D) with labels (Q,) against a labelled bank (N, D) with labels (N,):
    :func:`knn_predict`'s classifier (``k`` neighbours, temperature ``temperature``, ``chunk_size`` queries at
    once), on cosine similarities unless ``normalize=False`` (then the raw dot product). Hits are counted per chunk with lightly's
    :func:`~lightly.utils.benchmarking.topk.mean_topk_accuracy`, so the (Q, C) predictions are never held at once.
    Entries of ``topk`` larger than ``num_classes`` are skipped (no "top5" with 3 classes).

    Returns:
        ``{"top1": float, "top5": float}`` (one key per kept entry of ``topk``).
    """
    query = check_non_empty(check_embeddings(query, "query"), "query")
    query_labels = check_labels(query_labels, "query_labels", query.shape[0], "row of query")
    ks = topk_within(topk, num_classes)
    correct: Optional[Tensor] = None
    chunks = _predict_chunks(query, bank, bank_labels, num_classes, k, temperature, chunk_size, normalize)
    for start, predictions in chunks:
        hits = topk_hits(predictions, query_labels[start : start + predictions.shape[0]], ks)
        correct = hits if correct is None else correct + hits
    assert correct is not None
    return {f"top{value}": acc for value, acc in zip(ks, (correct / query.shape[0]).tolist())}


@torch.no_grad()
def _predict_chunks(
    query: Tensor,
    bank: Tensor,
    bank_labels: Tensor,
    num_classes: int,
    k: int,
    temperature: float,
    chunk_size: int,
    normalize: bool,
    names: Tuple[str, ...] = ("query", "bank", "row of bank", "bank_labels", "k", "temperature"),
) -> Iterator[Tuple[int, Tensor]]:
    """Validates (errors call the arguments ``names``), then yields ``(start, predictions of
    query[start:start + chunk_size])`` against the (N, D) ``bank``."""
    query_name, bank_name, bank_entry, labels_name, k_name, temperature_name = names
    query = check_finite(check_non_empty(check_embeddings(query, query_name), query_name), query_name)
    bank = check_finite(check_non_empty(check_embeddings(bank, bank_name), bank_name), bank_name)
    check_same_dim(query, bank, f"{query_name} and {bank_name}")
    bank_labels = check_labels(bank_labels, labels_name, bank.shape[0], bank_entry)
    check_positive_int(num_classes, "num_classes")
    check_int(k, k_name, 1, bank.shape[0])  # at most the number of bank entries
    temperature = check_float(temperature, temperature_name, 0.0, exclusive_minimum=True)
    check_positive_int(chunk_size, "chunk_size")
    bank_labels = bank_labels.to(bank.device)
    low, high = torch.aminmax(bank_labels)
    if low < 0 or high >= num_classes:  # one host sync, before any work
        raise ValueError(f"{labels_name} must lie in [0, num_classes={num_classes}), got values in [{low}, {high}]")

    # Normalising the bank would copy it (10 GB for ImageNet's 1.28 M x 2048): scale the similarity columns by
    # 1 / |bank row| instead, and not at all when the bank is already unit-norm (one host sync).
    column_scale: Optional[Tensor] = None
    if normalize:
        inverse_norms = bank.norm(dim=1, dtype=torch.float32).clamp_min(1e-12).reciprocal()
        if not bool(torch.allclose(inverse_norms, torch.ones_like(inverse_norms), rtol=0, atol=1e-5)):
            column_scale = inverse_norms.to(bank.dtype)
    bank_t = bank.t()  # a view: torch.mm takes the transposed layout as it is, no copy
    similarity = torch.empty(min(chunk_size, query.shape[0]), bank.shape[0], dtype=bank.dtype, device=bank.device)
    for start in range(0, query.shape[0], chunk_size):
        chunk = query[start : start + chunk_size].to(device=bank.device, dtype=bank.dtype)
        if normalize:
            chunk = F.normalize(chunk, dim=1)
        sim = torch.mm(chunk, bank_t, out=similarity[: chunk.shape[0]])
        if column_scale is not None:
            sim.mul_(column_scale)
        values, indices = sim.topk(k, dim=1)
        # Subtracting each row's best similarity scales that row's votes by one constant: the same ranking as
        # lightly's exp(sim / t), without overflow for small temperatures or half-precision features.
        weights = ((values.float() - values[:, :1].float()) / temperature).exp()
        scores = weights.new_zeros(chunk.shape[0], num_classes).scatter_add_(1, bank_labels[indices], weights)
        yield start, scores.argsort(dim=1, descending=True)


@torch.no_grad()
def extract_features(
    encoder: Callable[[Tensor], Tensor],
    batches: Iterable[Batch],
    device: Optional[Union[torch.device, str]] = None,
    preprocess: Optional[Callable[[Tensor], Tensor]] = None,
    autocast: bool = True,
    batch_size: int = 1024,
) -> Tuple[Tensor, Optional[Tensor]]:
    """Features of every batch, concatenated: ``(features (N, D) float32, labels (N,) or None)``.

    Args:
        encoder: Maps images (B, ...) to features (B, ...), flattened to (B, D). An ``nn.Module`` (or a bound method
            of one, such as ``model.embed``) is put in eval mode for the pass and its training flag restored
            afterwards, so batch norm uses its running statistics and does not update them.
        batches: An iterable of image tensors, or of tuples/lists whose first item is the images and second item
            the labels (torchvision's ``(images, targets)``, lightly's ``(images, targets, filenames)``); or one
            tensor of all images (N, ...), split into chunks of ``batch_size``.
        device: Where to run; defaults to the encoder's parameters' device (else the images' own device).
        preprocess: Applied to the images on the device before the encoder (e.g. uint8 -> normalised float).
        autocast: Run the encoder under bf16 autocast on CUDA (ignored elsewhere); features come back as float32.

    Returns:
        ``(features, labels)`` on ``device``; ``labels`` is ``None`` when the batches carry none.
    """
    module = encoder if isinstance(encoder, nn.Module) else getattr(encoder, "__self__", None)
    module = module if isinstance(module, nn.Module) else None
    if device is None and module is not None:
        device = next((p.device for p in module.parameters()), None)
    if isinstance(batches, Tensor):
        check_positive_int(batch_size, "batch_size")
        batches = batches.split(batch_size)
    was_training = module.training if module is not None else None
    if module is not None:
        module.eval()
    features, labels = [], []
    has_labels = False
    try:
        for index, batch in enumerate(batches):
            images, targets = _split_batch(batch, index)
            target_device = torch.device(device) if device is not None else images.device
            images = images.to(target_device, non_blocking=True)
            if preprocess is not None:
                images = preprocess(images)
            amp = (
                torch.autocast("cuda", dtype=torch.bfloat16)
                if autocast and target_device.type == "cuda"
                else nullcontext()
            )
            with amp:
                features.append(encoder(images).flatten(start_dim=1).float())
            if index == 0:
                has_labels = targets is not None
            elif (targets is not None) != has_labels:
                raise ValueError(f"batches must all carry labels or all not, batch {index} differs from batch 0")
            if targets is not None:
                labels.append(torch.as_tensor(targets).to(target_device, non_blocking=True))
    finally:
        if module is not None and was_training is not None:
            module.train(was_training)
    if not features:
        raise ValueError("batches must yield at least one batch, got none")
    return torch.cat(features), (torch.cat(labels) if labels else None)


def _split_batch(batch: Batch, index: int) -> Tuple[Tensor, Optional[object]]:
    if isinstance(batch, Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    raise TypeError(
        f"batches must yield image tensors or (images, labels, ...) tuples, got {type(batch).__name__} "
        f"at batch {index}"
    )

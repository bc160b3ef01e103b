"""gather_distributed on 2 CPU processes (gloo): the loss on every rank and the DDP-averaged gradients equal the
single-process loss and gradients on the concatenated batch."""

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from lightly_siamese_ext.losses import ContrastiveLoss, TripletLoss
from lightly_siamese_ext.training import launch

WORLD_SIZE = 2
LOCAL_BATCH = 12


def _global_batch():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(WORLD_SIZE * LOCAL_BATCH, 6, generator=generator)
    labels = torch.randint(0, 4, (WORLD_SIZE * LOCAL_BATCH,), generator=generator)
    return inputs, labels


def _model():
    torch.manual_seed(1)
    return torch.nn.Linear(6, 5)


def _cases(gather: bool):
    """(name, loss, how to call it on (embeddings, labels))."""
    label_form = lambda loss: lambda e, y: loss(e, y)  # noqa: E731
    # Strided splits, so that the gathered triplets and pairs are those of the same split of the global batch.
    thirds = lambda loss: lambda e, y: loss(e[0::3], e[1::3], e[2::3])  # noqa: E731
    return [
        ("batch_hard", label_form(TripletLoss(0.5, "batch_hard", gather_distributed=gather))),
        ("batch_all", label_form(TripletLoss(0.5, "batch_all", gather_distributed=gather))),
        ("semi_hard_cosine", label_form(TripletLoss(0.3, "semi_hard", "cosine", gather_distributed=gather))),
        ("soft_batch_all", label_form(TripletLoss(0.5, "batch_all", soft_margin=True, gather_distributed=gather))),
        ("explicit", thirds(TripletLoss(0.5, gather_distributed=gather))),
        ("contrastive", label_form(ContrastiveLoss(2.0, gather_distributed=gather))),
        (
            "contrastive_pairs",
            lambda e, y: ContrastiveLoss(2.0, gather_distributed=gather)(e[0::2], e[1::2], y[0::2] % 2),
        ),
    ]


def _rank_worker(rank: int, world_size: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    inputs, labels = _global_batch()
    local = slice(rank * LOCAL_BATCH, (rank + 1) * LOCAL_BATCH)
    model = DistributedDataParallel(_model())
    results = {}
    for name, compute in _cases(gather=True):
        model.zero_grad()
        loss = compute(F.normalize(model(inputs[local]), dim=1), labels[local])
        loss.backward()
        results[name] = (loss.detach(), [p.grad.clone() for p in model.parameters()])
    torch.save(results, f"{out_dir}/rank{rank}.pt")


def test_gathered_loss_and_ddp_gradients_equal_the_single_process_result(tmp_path) -> None:
    launch(_rank_worker, world_size=WORLD_SIZE, args=(str(tmp_path),), backend="gloo")
    inputs, labels = _global_batch()
    model = _model()
    for name, compute in _cases(gather=False):
        model.zero_grad()
        loss = compute(F.normalize(model(inputs), dim=1), labels)
        loss.backward()
        for rank in range(WORLD_SIZE):
            rank_loss, rank_grads = torch.load(tmp_path / f"rank{rank}.pt")[name]
            torch.testing.assert_close(rank_loss, loss.detach(), msg=f"{name}: loss on rank {rank}")
            for grad, param in zip(rank_grads, model.parameters()):
                torch.testing.assert_close(grad, param.grad, msg=f"{name}: gradient on rank {rank}")

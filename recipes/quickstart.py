"""Quick start: a few SimSiam steps on scikit-learn's digits (embedded, offline), to check an installation.

This is a smoke run, not a training recipe: it shows the pieces fit and the loss falls.
    python recipes/quickstart.py
"""

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

import lightly_siamese_ext as lse


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Cheap batched augmentation: random shift by up to 2 px and brightness jitter."""
    shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
    x = torch.roll(x, shifts=shift, dims=(2, 3))
    return x * (0.8 + 0.4 * torch.rand(x.shape[0], 1, 1, 1, generator=generator))


def main() -> None:
    print("quickstart: embedded scikit-learn digits (1,797 images, 8x8 -> 16x16), a smoke run, not a benchmark")
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=16, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    model = lse.SimSiam("resnet18_cifar", proj_dim=256, pred_hidden_dim=64)
    optimizer = torch.optim.SGD(model.parameter_groups(fix_predictor_lr=True), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for step in range(30):
        batch = images[torch.randint(len(images), (128,), generator=generator)]
        loss = lse.simsiam_loss(model(augment(batch, generator), augment(batch, generator)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 5 == 0 or step == 29:
            print(f"step {step:2d}  loss {loss.item():+.4f}")


if __name__ == "__main__":
    main()

"""Models: SimSiam (two augmented views) and the Siamese twin network (two inputs, one encoder)."""

from lightly_siamese_ext.models.siamese import SiameseNetwork
from lightly_siamese_ext.models.simsiam import SimSiam, SimSiamOutput, simsiam_loss

__all__ = ["SiameseNetwork", "SimSiam", "SimSiamOutput", "simsiam_loss"]

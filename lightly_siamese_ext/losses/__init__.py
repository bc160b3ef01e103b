"""Pairwise-margin losses for siamese and metric-learning training, with in-batch mining.

- :class:`ContrastiveLoss`: Hadsell et al. 2006, on given pairs or on all pairs of a labelled batch.
- :class:`TripletLoss`: FaceNet / Hermans et al., on given triplets or mined (batch_all, batch_hard, semi_hard).
- :mod:`.mining`: the mining functions, returning index tensors, for custom losses.
- :mod:`.distance_matrix`: the batch's (B, B) distances, computed once without autograd, exact gradients.
- Paired and pairwise distances are in :mod:`lightly_siamese_ext.distances`.
"""

from lightly_siamese_ext.distances import DISTANCES
from lightly_siamese_ext.losses.contrastive import ContrastiveLoss
from lightly_siamese_ext.losses.distance_matrix import DistanceMatrix
from lightly_siamese_ext.losses.mining import MINING, mine_batch_all, mine_batch_hard, mine_semi_hard
from lightly_siamese_ext.losses.triplet import TripletLoss

__all__ = [
    "DISTANCES",
    "MINING",
    "ContrastiveLoss",
    "DistanceMatrix",
    "TripletLoss",
    "mine_batch_all",
    "mine_batch_hard",
    "mine_semi_hard",
]

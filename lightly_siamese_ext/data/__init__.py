"""Data path: labelled pairs and triplets, P x K batches, and a device-resident loader."""

from lightly_siamese_ext.data.arrays import ImageArrays, images_from_numpy, load_cifar10_folder, load_image_folder
from lightly_siamese_ext.data.gpu_loader import GPUResidentLoader
from lightly_siamese_ext.data.pairs import PairDataset, TripletDataset
from lightly_siamese_ext.data.samplers import PKSampler
from lightly_siamese_ext.data.targets import read_targets

__all__ = [
    "GPUResidentLoader",
    "ImageArrays",
    "PKSampler",
    "PairDataset",
    "TripletDataset",
    "images_from_numpy",
    "load_cifar10_folder",
    "load_image_folder",
    "read_targets",
]

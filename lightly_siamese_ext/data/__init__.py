"""Data path: labelled pairs and triplets, P x K batches, and a device-resident loader."""

from lightly_siamese_ext.data.array_dataset import ArrayImageDataset
from lightly_siamese_ext.data.arrays import ImageArrays, images_from_numpy, load_cifar10_folder, load_image_folder
from lightly_siamese_ext.data.gpu_loader import GPUResidentLoader
from lightly_siamese_ext.data.pairs import PairDataset, TripletDataset
from lightly_siamese_ext.data.samplers import PKSampler
from lightly_siamese_ext.data.sources import (
    ImageSource,
    TrainTestSplit,
    holdout_split,
    load_digits_arrays,
    load_image_source,
    load_train_test,
    subset,
)
from lightly_siamese_ext.data.targets import read_targets

__all__ = [
    "ArrayImageDataset",
    "GPUResidentLoader",
    "ImageArrays",
    "ImageSource",
    "PKSampler",
    "PairDataset",
    "TrainTestSplit",
    "TripletDataset",
    "holdout_split",
    "images_from_numpy",
    "load_cifar10_folder",
    "load_digits_arrays",
    "load_image_folder",
    "load_image_source",
    "load_train_test",
    "read_targets",
    "subset",
]

"""Data path: labelled pairs and triplets, P x K batches, a device-resident loader, and images streamed by\nDataLoader workers as fixed-size uint8 tensors."""

from lightly_siamese_ext.data.array_dataset import ArrayImageDataset
from lightly_siamese_ext.data.arrays import ImageArrays, images_from_numpy
from lightly_siamese_ext.data.cifar10 import load_cifar10_folder
from lightly_siamese_ext.data.image_folder import load_image_folder
from lightly_siamese_ext.data.class_split import OpenSetSplit, open_set_split, split_classes
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
from lightly_siamese_ext.data.streaming import StreamingImageDataset, StreamingSplit, stream_train_test, streaming_loader
from lightly_siamese_ext.data.subsets import first_per_class, random_subset, random_subset_indices
from lightly_siamese_ext.data.targets import read_targets

__all__ = [
    "ArrayImageDataset",
    "GPUResidentLoader",
    "ImageArrays",
    "ImageSource",
    "OpenSetSplit",
    "PKSampler",
    "PairDataset",
    "StreamingImageDataset",
    "StreamingSplit",
    "TrainTestSplit",
    "TripletDataset",
    "first_per_class",
    "holdout_split",
    "images_from_numpy",
    "load_cifar10_folder",
    "load_digits_arrays",
    "load_image_folder",
    "load_image_source",
    "load_train_test",
    "open_set_split",
    "random_subset",
    "random_subset_indices",
    "read_targets",
    "split_classes",
    "stream_train_test",
    "streaming_loader",
    "subset",
]

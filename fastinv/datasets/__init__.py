"""Dataset readers: file lists, targets and groups for the evaluation suites (no decoding)."""
from fastinv.datasets.base import ImageSet, Splits, load_rgb
from fastinv.datasets.registry import DATASETS, DatasetSpec, find_datasets, get_dataset, read_dataset

__all__ = ["DATASETS", "DatasetSpec", "ImageSet", "Splits", "find_datasets", "get_dataset", "load_rgb", "read_dataset"]

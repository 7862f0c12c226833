"""Dataset readers: file lists, targets and groups for the evaluation suites (decoding is fastinv.pipelines')."""
from fastinv.datasets.base import ImageSet, Splits
from fastinv.datasets.registry import DATASETS, DatasetSpec, find_datasets, read_dataset

__all__ = ["DATASETS", "DatasetSpec", "ImageSet", "Splits", "find_datasets", "read_dataset"]

"""Augmentation ops, one module each, found by name through `OPS`.

Importing this package imports every module in it, so an op module dropped here registers
itself (`base.register_op`) and recipe files can name it at once.
"""
import importlib
import pkgutil

from fastinv.pipelines.ops.base import COLOUR, CROP, FLIP, NORMALIZE, OPS, Op, Stage, stage_defaults

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["COLOUR", "CROP", "FLIP", "NORMALIZE", "OPS", "Op", "Stage", "stage_defaults"]

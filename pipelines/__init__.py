"""Decode + augment pipelines (torch, DALI, FFCV) and augmentation recipes.

    from fastinv.pipelines import LoaderConfig, build_two_view_loader
    loader = build_two_view_loader(LoaderConfig(root="world/trainset", recipe="default"))
    for view1, view2, labels, indices in loader: ...
"""
from fastinv.pipelines.config import BACKENDS, LoaderConfig, TwoViewBatch, TwoViewLoaderBase
from fastinv.pipelines.decode import decode_image
from fastinv.pipelines.folder import scan_image_folder
from fastinv.pipelines.loader import build_two_view_loader
from fastinv.pipelines.recipes import RECIPES, Recipe, get_recipe, load_recipe, recipe_from_dict

__all__ = [
    "BACKENDS", "LoaderConfig", "RECIPES", "Recipe", "TwoViewBatch", "TwoViewLoaderBase", "build_two_view_loader",
    "decode_image", "get_recipe", "load_recipe", "recipe_from_dict", "scan_image_folder",
]

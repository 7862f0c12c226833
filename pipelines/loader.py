"""Build a two-view loader for any backend from a LoaderConfig."""
from pathlib import Path

from fastinv.errors import UsageError
from fastinv.pipelines.config import LoaderConfig, TwoViewLoaderBase
from fastinv.pipelines.folder import scan_image_folder
from fastinv.pipelines.recipes import get_recipe


def build_two_view_loader(cfg: LoaderConfig) -> TwoViewLoaderBase:
    """A loader yielding TwoViewBatch on cfg.device: torch and dali read an ImageFolder,
    ffcv reads a .beton written by `fastinv convert --to beton`."""
    cfg.validate()
    recipe = get_recipe(cfg.recipe)
    if cfg.backend == "ffcv":
        from fastinv.pipelines.ffcv_backend import FfcvTwoViewLoader
        if Path(cfg.root).suffix != ".beton":
            raise UsageError(f"the ffcv backend reads a .beton file, got {cfg.root}; write one with "
                             "'fastinv convert --to beton --data DIR --out FILE.beton'")
        return FfcvTwoViewLoader(cfg, recipe)
    paths, labels, classes = scan_image_folder(cfg.root)
    if cfg.backend == "dali":
        from fastinv.pipelines.dali_backend import DaliTwoViewLoader
        return DaliTwoViewLoader(cfg, recipe, paths, labels, classes)
    from fastinv.pipelines.torch_backend import TorchTwoViewLoader
    return TorchTwoViewLoader(cfg, recipe, paths, labels, classes)

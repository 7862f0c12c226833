"""What every suite shares: the models, their feature extractors, the feature cache, progress."""
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from fastinv.eval.cache import FeatureCache
from fastinv.eval.config import EvalConfig, ViewConfig
from fastinv.eval.features import FeatureExtractor
from fastinv.pipelines.evaltf.views import clean_view

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class EvalContext:
    """Models (base and fused), their extractors, the cache, and one progress bar over all suites."""

    config: EvalConfig
    extractors: dict[str, FeatureExtractor]
    fusions: dict[str, list[str]] = field(default_factory=dict)
    cache: FeatureCache | None = None
    bar: tqdm | None = None

    def __post_init__(self) -> None:
        if self.cache is None:
            self.cache = FeatureCache(self.config.cache_dir / "features")

    @property
    def models(self) -> list[str]:
        """Every model to report: the base models in order, then the fusions."""
        return [*self.extractors, *self.fusions]

    def components(self, model: str) -> list[str]:
        """The base models whose features make up `model` (itself unless it is a fusion)."""
        return self.fusions.get(model, [model])

    def advance(self, label: str) -> None:
        """Move the overall progress bar one step and show what was just done."""
        if self.bar is not None:
            self.bar.set_postfix_str(label, refresh=False)
            self.bar.update(1)

    def features(self, model: str, images: torch.Tensor, *, dataset: str, view: ViewConfig,
                 prepare: Transform | None = None, transform_key: str = "clean") -> torch.Tensor:
        """Features (N, D) of `images` (uint8, working size) for `model`, cached on disk.

        Each batch becomes model input through `prepare` (on the device) when given, else
        through the deterministic `view`; `transform_key` names what `prepare` does (transform
        and magnitude) in the cache key. A fusion concatenates its components' features.
        """
        parts = []
        for name in self.components(model):
            extractor = self.extractors[name]
            key = self.cache.key(model=extractor.hash, dataset=dataset, transform=transform_key, view=view.describe())

            def compute(extractor: FeatureExtractor = extractor) -> torch.Tensor:
                to_input = prepare or (lambda batch: clean_view(batch, view.resize, view.crop, normalise=False))
                return extractor.extract(images.split(self.config.batch_size), transform=to_input)

            parts.append(self.cache.get_or_compute(key, compute, extractor.device))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

"""What every suite shares: the models, their feature extractors, the feature cache, progress."""
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from tqdm import tqdm

from fastinv.eval.cache import FeatureCache
from fastinv.eval.config import EvalConfig, ViewConfig
from fastinv.eval.features import FeatureExtractor
from fastinv.kernels import hoeffding_winner
from fastinv.pipelines.evaltf.views import clean_view

Transform = Callable[[torch.Tensor], torch.Tensor]
RECIPE_MODELS = ("default", "spatial", "appearance")
Item = TypeVar("Item")


@dataclass
class EvalContext:
    """Models (base and fused), their extractors, the cache, one progress bar over all suites, and
    `meta`: provenance the suites record for results.json."""

    config: EvalConfig
    extractors: dict[str, FeatureExtractor]
    fusions: dict[str, list[str]] = field(default_factory=dict)
    cache: FeatureCache | None = None
    bar: tqdm | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cache is None:
            self.cache = FeatureCache(self.config.cache_dir / "features")

    @property
    def models(self) -> list[str]:
        """Every model to report: the base models in order, then the fusions."""
        return [*self.extractors, *self.fusions]

    @property
    def compared(self) -> list[str]:
        """The models of the significance test: `config.compare`, else those of the three recipe
        models (default, spatial, appearance) that are present. Baselines and fusions are not in it."""
        if self.config.compare is not None:
            return list(self.config.compare)
        return [m for m in RECIPE_MODELS if m in self.models]

    def winner(self, scores: dict[str, torch.Tensor], bounds: tuple[float, float]) -> str | None:
        """The compared model that beats each other compared model on paired per-item `scores`
        (Hoeffding, delta Bonferroni-split over the comparisons), or None."""
        compared = {m: scores[m] for m in self.compared if m in scores}
        if len(compared) < 2:
            return None
        return hoeffding_winner(compared, delta=self.config.delta, bounds=bounds).winner

    def significance_note(self, over: str, bounds: tuple[float, float]) -> str:
        """The table-note sentence that says what the bullet means and which models were tested."""
        compared = self.compared
        if len(compared) < 2:
            return (f"No significance test: it compares two or more of {', '.join(RECIPE_MODELS)} "
                    "(or the models named by --compare).")
        others = [m for m in self.models if m not in compared]
        shown = f"; shown but not tested: {', '.join(others)}" if others else ""
        return (f"• = significantly better than each other of {', '.join(compared)} (Hoeffding over {over}, "
                f"differences bounded in [{bounds[0]:g}, {bounds[1]:g}], delta {self.config.delta} split over "
                f"{len(compared) - 1} comparison(s){shown}).")

    def components(self, model: str) -> list[str]:
        """The base models whose features make up `model` (itself unless it is a fusion)."""
        return self.fusions.get(model, [model])

    def each(self, suite: str, items: Iterable[Item]) -> Iterator[Item]:
        """Yield `items` (things with a `name`: datasets, tasks, transforms) one by one; when the
        caller is done with one, advance the progress bar one step per base model and show it."""
        for item in items:
            yield item
            if self.bar is not None:
                self.bar.set_postfix_str(f"{suite} {item.name}", refresh=False)
                self.bar.update(len(self.extractors))

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

"""Run the chosen suites for the chosen models and collect one Results object."""
import time
from pathlib import Path

from tqdm import tqdm

from fastinv.datasets import DATASETS
from fastinv.eval.config import EvalConfig
from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData
from fastinv.eval.features import FeatureExtractor
from fastinv.eval.modelspec import ModelSpec
from fastinv.eval.suites import FEATURE_SUITES, SUITE_NAMES, correlation
from fastinv.log import get_logger
from fastinv.models import load_backbone
from fastinv.results import Results, environment_meta

log = get_logger(__name__)


def build_context(models: list[ModelSpec], fusions: dict[str, list[str]], config: EvalConfig) -> EvalContext:
    """Load every backbone onto the device and wrap it in a feature extractor."""
    extractors = {}
    for spec in models:
        backbone = load_backbone(spec.source, spec.arch, device=config.device, seed=config.seed)
        extractors[spec.name] = FeatureExtractor(backbone, config.device, amp=config.amp,
                                                 channels_last=config.channels_last, batch_size=config.batch_size)
    return EvalContext(config, extractors, dict(fusions))


_SUITES_READING = {"knn": ("downstream", "realworld")}  # suites that read the datasets of other suites


def _concerns(name: str, suites: list[str]) -> bool:
    """Whether a skipped entry (a missing dataset, or a file) matters to a run of `suites`."""
    if name not in DATASETS:
        return True
    reads = set(suites).union(*(_SUITES_READING.get(s, ()) for s in suites))
    return DATASETS[name].suite in reads


def evaluate(models: list[ModelSpec], fusions: dict[str, list[str]], suites: list[str], config: EvalConfig,
             world: Path, *, data_root: Path | None = None, reference: Path | None = None,
             meta: dict | None = None) -> Results:
    """Evaluate `models` (and their `fusions`) on `suites`; return every table with its settings.

    `reference` is the folder whose images give the reference statistics and the synthetic suite's
    images (ImageNet-val in the paper); the world's training split when None."""
    unknown = sorted(set(suites) - set(SUITE_NAMES))
    if unknown:
        raise ValueError(f"unknown suite(s) {', '.join(unknown)}; valid: {', '.join(SUITE_NAMES)}")
    ctx = build_context(models, fusions, config)
    data = EvalData(config, Path(world), data_root, reference)
    chosen = [FEATURE_SUITES[name] for name in FEATURE_SUITES if name in suites]
    skipped: dict[str, str] = {}
    correlated = correlation.models(ctx)
    if "correlation" in suites and len(correlated) < correlation.MIN_MODELS:
        skipped["correlation"] = f"needs {correlation.MIN_MODELS} or more models besides fusions, got {len(correlated)}"
    if "correlation" in suites and not {"synthetic", "realworld"} <= set(suites):
        skipped["correlation"] = "needs the synthetic and realworld suites in the same run"
    started = time.perf_counter()
    tables = []
    with tqdm(total=sum(suite.steps(ctx, data) for suite in chosen), desc="eval", unit="step",
              disable=not config.progress) as bar:
        ctx.bar = bar
        for suite in chosen:
            tables += suite.run(ctx, data)
    if "correlation" in suites and "correlation" not in skipped:
        tables += correlation.run(tables, correlated)
    skipped.update({name: why for name, why in data.skipped.items() if _concerns(name, suites)})
    run_meta = environment_meta(config.device)
    run_meta.update(meta or {})
    run_meta["seconds"] = round(time.perf_counter() - started, 1)
    run_meta["feature_cache"] = {"hits": ctx.cache.hits, "misses": ctx.cache.misses, "rebuilt": ctx.cache.rebuilt}
    run_meta.update(ctx.meta)
    reference_meta = data.reference_meta()
    if reference_meta is not None:
        run_meta["reference"] = reference_meta
    return Results(tables=tables, models=ctx.models, meta=run_meta, skipped=skipped)

"""Run the chosen suites for the chosen models and collect one Results object."""
import importlib
import time
from pathlib import Path
from types import ModuleType

from tqdm import tqdm

from fastinv.datasets import DATASETS
from fastinv.eval.config import EvalConfig
from fastinv.eval.context import EvalContext
from fastinv.eval.data import EvalData
from fastinv.eval.features import FeatureExtractor
from fastinv.eval.modelspec import ModelSpec
from fastinv.eval.suites import SUITES, SuiteSpec
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


def suite_module(spec: SuiteSpec) -> ModuleType:
    """The module that holds suite `spec`'s code (`fastinv.eval.suites.<name>`)."""
    return importlib.import_module(f"fastinv.eval.suites.{spec.name}")


def _unmet(spec: SuiteSpec, ctx: EvalContext, suites: list[str]) -> str | None:
    """Why suite `spec` cannot run in a run of `suites` with the models of `ctx`, or None."""
    if not set(spec.needs) <= set(suites):
        return f"needs the {' and '.join(spec.needs)} suites in the same run"
    if len(ctx.extractors) < spec.min_models:
        return f"needs {spec.min_models} or more models besides fusions, got {len(ctx.extractors)}"
    return None


def _concerns(name: str, suites: list[SuiteSpec]) -> bool:
    """Whether a skipped entry (a missing dataset, or a file) matters to a run of `suites`."""
    if name not in DATASETS:
        return True
    reads = {s.name for s in suites}.union(*(s.reads for s in suites))
    return DATASETS.get(name).suite in reads


def evaluate(models: list[ModelSpec], fusions: dict[str, list[str]], suites: list[str], config: EvalConfig,
             world: Path, *, data_root: Path | None = None, reference: Path | None = None,
             meta: dict | None = None) -> Results:
    """Evaluate `models` (and their `fusions`) on `suites`, in the registry's order; return every
    table with its settings. An unknown suite name is a UsageError listing the valid ones.

    `reference` is the folder whose images give the reference statistics and the synthetic suite's
    images (ImageNet-val in the paper); the world's training split when None."""
    for name in suites:
        SUITES.get(name)
    chosen = [spec for name, spec in SUITES if name in suites]
    ctx = build_context(models, fusions, config)
    data = EvalData(config, Path(world), data_root, reference)
    skipped = {spec.name: why for spec in chosen if (why := _unmet(spec, ctx, suites)) is not None}
    runnable = [(spec, suite_module(spec)) for spec in chosen if spec.name not in skipped]
    started = time.perf_counter()
    steps = sum(len(module.items(data)) for spec, module in runnable if not spec.on_tables)
    tables = []
    with tqdm(total=len(ctx.extractors) * steps, desc="eval", unit="step", disable=not config.progress) as bar:
        ctx.bar = bar
        for spec, module in runnable:
            tables += module.run(tables, ctx) if spec.on_tables else module.run(ctx, data)
    skipped.update({name: why for name, why in data.skipped.items() if _concerns(name, chosen)})
    run_meta = environment_meta(config.device)
    run_meta.update(meta or {})
    run_meta["seconds"] = round(time.perf_counter() - started, 1)
    run_meta["feature_cache"] = {"hits": ctx.cache.hits, "misses": ctx.cache.misses, "rebuilt": ctx.cache.rebuilt}
    run_meta.update(ctx.meta)
    reference_meta = data.reference_meta()
    if reference_meta is not None:
        run_meta["reference"] = reference_meta
    return Results(tables=tables, models=ctx.models, meta=run_meta, skipped=skipped)

"""The evaluation suites. Each module exposes NAME, steps(ctx, data) and run(ctx, data) -> tables;
`correlation` works on the other suites' tables instead of on features."""
from types import ModuleType

from fastinv.eval.config import SUITE_NAMES
from fastinv.eval.suites import correlation, downstream, extrinsic, knn, realworld, synthetic

FEATURE_SUITES: dict[str, ModuleType] = {m.NAME: m for m in (synthetic, realworld, extrinsic, downstream, knn)}
assert (*FEATURE_SUITES, correlation.NAME) == SUITE_NAMES, "SUITE_NAMES must list every suite in order"

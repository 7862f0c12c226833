"""Paper Fig. E.1: Spearman rank correlation, over the models, between every synthetic and every
real-world invariance score (cosine similarity). It correlates the base models only: a fusion's
features are its components' features side by side, not another learned model."""
import numpy as np
from scipy.stats import spearmanr

from fastinv.eval.context import EvalContext
from fastinv.eval.suites import SUITES
from fastinv.results import Table

NAME = "correlation"
SUITE = SUITES.get(NAME)


def models(ctx: EvalContext) -> list[str]:
    """The models Fig. E.1 correlates: every base model, no fusion."""
    return list(ctx.extractors)


def run(tables: list[Table], ctx: EvalContext) -> list[Table]:
    """One table: rows = synthetic transforms, columns = real-world sets, cells = Spearman rho over `models(ctx)`."""
    correlated = models(ctx)
    by_key = {t.key: t for t in tables}
    synthetic, realworld = by_key["synthetic_cosine"], by_key["realworld_cosine"]
    rows = {}
    for transform in synthetic.columns:
        x = np.array([synthetic.rows[m][transform] for m in correlated], dtype=float)
        rows[transform] = {}
        for column in realworld.columns:
            y = np.array([realworld.rows[m][column] for m in correlated], dtype=float)
            constant = np.ptp(x) == 0 or np.ptp(y) == 0
            rows[transform][column] = None if constant else float(spearmanr(x, y).statistic)
    return [Table(**SUITE.table_args("correlation_spearman"), columns=list(realworld.columns), rows=rows,
                  column_kinds=dict(realworld.column_kinds),
                  note=f"Over {len(correlated)} models ({', '.join(correlated)}), fusions left out; cosine similarity "
                       "scores. Empty = a score that does not vary across models.")]

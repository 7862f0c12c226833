"""The evaluation suites: what each one computes and the tables it writes, declared in one place.

Each suite registered here has its code in the module `fastinv.eval.suites.<name>`. A suite that
works on features exposes `items(data)`, the things it iterates over (the runner counts one
progress step per item and base model), and `run(ctx, data) -> list[Table]`; one that works on
the tables of the suites before it (`on_tables`) exposes `run(tables, ctx) -> list[Table]`.
Suites build their tables from their declarations (`SuiteSpec.table_args`), and the report reads
the declarations for section titles, value labels and which tables make up each figure.

This module imports nothing heavy, so the command line and results validation can use it.
"""
from dataclasses import dataclass

from fastinv.registry import Registry


@dataclass(frozen=True)
class TableSpec:
    """A table a suite writes.

    key: its key in results.json; for one table per dataset, the key of `main_dataset`'s table
        (the others are `{key}_{dataset}`).
    title: a str.format template of its title over values the suite fills in (e.g. "{folds}").
    value_label: what its numbers are, for axis and colour-bar labels.
    better: which value of a column is best: "lower", "higher" or "none".
    panel_rank: its preference for its suite's Figure 1 panel (0 = first choice), or None when
        it is never drawn there.
    figure: the other figure it is drawn in ("synthetic_heatmap" or "correlation"), or None.
    main_dataset: for one table per dataset, the dataset whose table keeps the bare `key`.
    """

    key: str
    title: str
    value_label: str
    better: str
    panel_rank: int | None = None
    figure: str | None = None
    main_dataset: str | None = None

    def matches(self, key: str) -> bool:
        """Whether a table called `key` is one of this declaration's tables."""
        return key == self.key or (self.main_dataset is not None and key.startswith(f"{self.key}_"))


@dataclass(frozen=True)
class SuiteSpec:
    """An evaluation suite: its name (also the report section of its tables), the section's title,
    the tables it writes, and how the runner and the figures treat it.

    panel: the title of its Figure 1 panel, or None when it has none.
    invariance: its scores measure invariance (the figures then read "more invariant").
    reads: the other suites whose datasets it also evaluates on.
    needs: the suites that must run in the same run (it is skipped otherwise).
    min_models: the fewest base models (fusions left out) it needs (it is skipped otherwise).
    on_tables: it works on the tables of the suites before it, not on features.
    """

    name: str
    title: str
    tables: tuple[TableSpec, ...]
    panel: str | None = None
    invariance: bool = False
    reads: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    min_models: int = 1
    on_tables: bool = False

    def table(self, key: str) -> TableSpec:
        """The declaration of this suite's table `key` (a per-dataset table by its base key)."""
        for spec in self.tables:
            if spec.matches(key):
                return spec
        raise ValueError(f"suite {self.name!r} declares no table {key!r}; it declares "
                         f"{', '.join(t.key for t in self.tables)}")

    def table_args(self, key: str, *, dataset: str | None = None, **values: object) -> dict[str, str]:
        """The declared fields of table `key` as `Table` arguments: key, title (its template filled
        with `values`, and `dataset` when given), better and section. For a per-dataset table,
        `dataset` picks the key: the bare key for the main dataset, `{key}_{dataset}` otherwise."""
        spec = self.table(key)
        if dataset is not None:
            values["dataset"] = dataset
            key = spec.key if dataset == spec.main_dataset else f"{spec.key}_{dataset}"
        return {"key": key, "title": spec.title.format(**values), "better": spec.better, "section": self.name}


def table_spec(section: str, key: str) -> TableSpec | None:
    """The declaration of the table `key` of suite `section`; None when no suite declares it."""
    if section not in SUITES:
        return None
    return next((spec for spec in SUITES.get(section).tables if spec.matches(key)), None)


SUITES: Registry[SuiteSpec] = Registry("suite")
for _suite in (
    SuiteSpec(
        "synthetic", "Synthetic invariance (paper Table 2)", panel="Synthetic invariance", invariance=True, tables=(
            TableSpec("synthetic_mahalanobis",
                      "Table 2 (top): Mahalanobis distance to the clean view (lower = more invariant)",
                      "Mahalanobis distance", "lower", panel_rank=1, figure="synthetic_heatmap"),
            TableSpec("synthetic_cosine",
                      "Table 2 (bottom): whitened cosine similarity to the clean view (higher = more invariant)",
                      "cosine similarity", "higher", panel_rank=0, figure="synthetic_heatmap"),
        )),
    SuiteSpec(
        "realworld", "Real-world invariance (paper Table 3)", panel="Real-world invariance", invariance=True, tables=(
            TableSpec("realworld_mahalanobis",
                      "Table 3 (top): mean pairwise Mahalanobis distance within groups (lower = more invariant)",
                      "Mahalanobis distance", "lower", panel_rank=1),
            TableSpec("realworld_cosine",
                      "Table 3 (bottom): mean whitened cosine similarity within groups (higher = more invariant)",
                      "cosine similarity", "higher", panel_rank=0),
        )),
    SuiteSpec(
        "extrinsic", "Extrinsic invariance (paper Table 4)", panel="Extrinsic invariance: regressing the latents", tables=(
            TableSpec("extrinsic_r2",
                      "Table 4 ({dataset}): test R^2 of kernel ridge regression of each latent (higher = better)",
                      "test R²", "higher", panel_rank=0, main_dataset="world_latents"),
        )),
    SuiteSpec(
        "downstream", "Downstream linear probes (paper Table 5)", panel="Downstream linear probes", tables=(
            TableSpec("downstream_cv", "Table 5: {folds}-fold CV score of linear probes (mean ± std, higher = better)",
                      "5-fold CV score (acc. / R²)", "higher", panel_rank=0),
            TableSpec("downstream_test", "Table 5 (test): score after refitting the best grid value on all training data",
                      "test score (acc. / R²)", "higher", panel_rank=1),
        )),
    SuiteSpec(
        "knn", "kNN monitor", reads=("downstream", "realworld"), tables=(
            TableSpec("knn_top1", "kNN top-1 (k = {k}, T = {temperature})", "kNN top-1", "higher"),
            TableSpec("knn_groups", "Group retrieval: leave-one-out kNN top-1 with the groups as classes "
                                    "(k = {k}, T = {temperature})", "kNN top-1 (groups as classes)", "higher"),
        )),
    SuiteSpec(
        "correlation", "Synthetic vs real-world invariance (paper Fig. E.1)", needs=("synthetic", "realworld"),
        min_models=3, on_tables=True, tables=(
            TableSpec("correlation_spearman",
                      "Fig. E.1: Spearman correlation of synthetic and real-world invariance across models",
                      "Spearman ρ", "none", figure="correlation"),
        )),
):
    SUITES.register(_suite.name, _suite)

"""Whole-grid solvers (logistic, ridge, kernel ridge, kNN) against sklearn / faiss / brute force, and bad input."""
import functools
import importlib.util

import numpy as np
import pytest
import torch
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastinv.errors import MissingExtraError
from fastinv.kernels import KernelInputError, kernel_ridge_cv, kfold_splits, knn_classify, knn_leave_one_out, linear_probe


def _classes(n=240, d=12, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, d)
    y = (x[:, :4] @ rng.normal(size=(4, c)) + 1.5 * rng.normal(size=(n, c))).argmax(1)
    return x, y


def test_logistic_probe_matches_sklearn_cv():
    x, y = _classes()
    grid = np.logspace(-3, 3, 7)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(x, y))
    ours = linear_probe(x, y, "classification", grid=grid, folds=folds, tol=1e-5, dtype=torch.float64)
    theirs = np.array([cross_val_score(LogisticRegression(C=1 / wd, tol=1e-8, max_iter=5000), x, y, cv=folds).mean()
                       for wd in grid])
    np.testing.assert_allclose(ours.cv_mean, theirs, atol=0.005)
    assert ours.solver_info["unconverged_fits"] == 0
    ref = LogisticRegression(C=1 / ours.best_value, tol=1e-10, max_iter=10000).fit(x, y)
    coef = ours.coef.numpy()
    np.testing.assert_allclose(coef - coef.mean(1, keepdims=True), ref.coef_.T, atol=2e-4)
    np.testing.assert_array_equal(ours.predict(x).numpy(), ref.predict(x))


def test_logistic_probe_float32_and_test_score():
    x, y = _classes(seed=1)
    xt, yt = _classes(n=90, seed=1)
    labels = np.array(["cat", "dog", "eel"])
    ours = linear_probe(x, labels[y], grid=np.logspace(-2, 2, 5), test_features=xt, test_targets=labels[yt],
                        metric="mean_per_class_accuracy")
    ref = LogisticRegression(C=1 / ours.best_value, max_iter=5000).fit(x, y)
    assert ours.test_score == pytest.approx(np.mean([(ref.predict(xt)[yt == k] == k).mean() for k in range(3)]), abs=0.02)
    assert list(ours.classes) == ["cat", "dog", "eel"]


def test_ridge_probe_matches_sklearn():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(150, 20))
    y = x @ rng.normal(size=(20, 3)) + 3.0 * rng.normal(size=(150, 3)) + 5.0
    xt = rng.normal(size=(60, 20))
    yt = xt @ np.ones((20, 3))
    grid = np.logspace(-6, 5, 45)
    folds = list(KFold(5, shuffle=True, random_state=0).split(x))
    ours = linear_probe(x, y, "regression", grid=grid, folds=folds, test_features=xt, test_targets=yt)
    theirs = np.array([cross_val_score(Ridge(alpha=a), x, y, cv=folds, scoring="r2").mean() for a in grid])
    np.testing.assert_allclose(ours.cv_mean, theirs, atol=1e-8)
    ref = Ridge(alpha=ours.best_value).fit(x, y)
    np.testing.assert_allclose(ours.coef.numpy(), ref.coef_.T, atol=1e-6)
    assert ours.test_score == pytest.approx(ref.score(xt, yt), abs=1e-6)


ALPHAS, GAMMAS = np.logspace(0, -4, 5), np.logspace(-5, 2, 8)


def _latents(n, rng):
    """Features of mixed scales, a tenth of the rows four times wider (so a fold's scaler differs from
    the full data's), and two latents: a smooth one and a noisy product."""
    x = rng.normal(size=(n, 5)) * [1, 2, 3, 4, 5] + 1
    x[: n // 10] *= 4
    y = np.stack([np.sin(x[:, 0]) + 0.05 * rng.normal(size=n), x[:, 1] * x[:, 2] / 10 + 2.0 * rng.normal(size=n)], 1)
    return x, y


@functools.lru_cache(maxsize=1)
def _per_latent_reference():
    """The data, folds, and the reference protocol: one GridSearchCV of StandardScaler + KernelRidge per latent."""
    rng = np.random.default_rng(3)
    (x, y), (xt, yt) = _latents(120, rng), _latents(40, rng)
    folds = list(KFold(5, shuffle=True, random_state=0).split(x))
    pipeline = make_pipeline(StandardScaler(), KernelRidge(kernel="rbf"))
    grid = {"kernelridge__alpha": ALPHAS, "kernelridge__gamma": GAMMAS}
    searches = [GridSearchCV(pipeline, grid, cv=folds).fit(x, y[:, t]) for t in range(y.shape[1])]
    return x, y, xt, yt, folds, searches


@pytest.mark.parametrize("solver", ["cholesky", "eigh"])
def test_kernel_ridge_chooses_each_latent_as_a_grid_search_per_latent(solver):
    x, y, xt, yt, folds, searches = _per_latent_reference()
    ours = kernel_ridge_cv(x, y, ALPHAS, GAMMAS, folds=folds, test_features=xt, test_targets=yt, solver=solver)
    assert ours.cv_mean.shape == (5, 8, 2) and ours.fold_scores.shape == (5, 5, 8, 2)
    for t, search in enumerate(searches):
        np.testing.assert_allclose(ours.cv_mean[:, :, t].ravel(), search.cv_results_["mean_test_score"], atol=1e-6)
        assert (ours.best_alpha[t], ours.best_gamma[t]) == (search.best_params_["kernelridge__alpha"],
                                                            search.best_params_["kernelridge__gamma"])
        assert ours.best_cv_mean[t] == pytest.approx(search.best_score_, abs=1e-6)
        assert ours.test_r2_per_output[t] == pytest.approx(search.score(xt, yt[:, t]), abs=1e-6)
    assert ours.test_r2 == pytest.approx(ours.test_r2_per_output.mean())
    assert not ours.standardized_targets


def test_two_latents_can_choose_different_pairs():
    x, y, xt, yt, folds, _ = _per_latent_reference()
    ours = kernel_ridge_cv(x, y, ALPHAS, GAMMAS, folds=folds, test_features=xt, test_targets=yt)
    assert (ours.best_alpha[0], ours.best_gamma[0]) != (ours.best_alpha[1], ours.best_gamma[1])
    # one pair for all latents (best mean R^2 over them) would cost at least one of them CV R^2
    joint = np.unravel_index(np.argmax(ours.cv_mean.mean(axis=2)), (5, 8))
    per_latent = ours.best_cv_mean
    at_joint_pair = ours.cv_mean[joint[0], joint[1]]
    assert (per_latent >= at_joint_pair).all() and (per_latent > at_joint_pair).any()


def test_kernel_ridge_fits_the_feature_scaler_inside_each_fold():
    x, y, _, _, folds, searches = _per_latent_reference()
    ours = kernel_ridge_cv(x, y[:, 0], ALPHAS, GAMMAS, folds=folds)
    np.testing.assert_allclose(np.asarray(ours.cv_mean).reshape(-1), searches[0].cv_results_["mean_test_score"], atol=1e-6)


def test_kernel_ridge_target_standardisation_is_recorded():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(60, 3))
    y = 100 * x[:, :1] + 1000
    result = kernel_ridge_cv(x, y, [1e-2], [0.1, 1.0], folds=3, standardize_targets=True, test_features=x, test_targets=y)
    assert result.standardized_targets and result.test_r2 > 0.9


def _brute_knn(train, labels, query, k, temperature):
    tn = train / np.linalg.norm(train, axis=1, keepdims=True)
    qn = query / np.linalg.norm(query, axis=1, keepdims=True)
    out = []
    for row in qn @ tn.T:
        top = np.argsort(-row)[:k]
        votes = np.zeros(labels.max() + 1)
        for j in top:
            votes[labels[j]] += np.exp(row[j] / temperature)
        out.append(votes.argmax())
    return np.array(out)


KNN_BACKENDS = ["torch", pytest.param("faiss", marks=pytest.mark.skipif(importlib.util.find_spec("faiss") is None,
                                                                         reason="faiss is not installed"))]


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_knn_matches_brute_force(backend):
    rng = np.random.default_rng(5)
    train, labels = rng.normal(size=(300, 16)), rng.integers(0, 4, 300)
    query, truth = rng.normal(size=(70, 16)), rng.integers(0, 4, 70)
    result = knn_classify(train, labels, query, truth, k=20, temperature=0.07, chunk=16, backend=backend)
    expected = _brute_knn(train, labels, query, 20, 0.07)
    np.testing.assert_array_equal(result.predictions, expected)
    assert result.top1 == pytest.approx((expected == truth).mean())


@pytest.mark.parametrize("backend", KNN_BACKENDS)
def test_leave_one_out_knn_is_knn_on_the_other_rows(backend):
    rng = np.random.default_rng(6)
    features, labels = rng.normal(size=(90, 8)), rng.integers(0, 3, 90)
    result = knn_leave_one_out(features, labels, k=7, temperature=0.1, chunk=16, backend=backend)
    expected = [_brute_knn(np.delete(features, i, 0), np.delete(labels, i), features[i:i + 1], 7, 0.1)[0]
                for i in range(90)]
    np.testing.assert_array_equal(result.predictions, expected)
    assert result.top1 == pytest.approx((np.asarray(expected) == labels).mean())
    twins = knn_leave_one_out(np.repeat(features[:4], 2, axis=0), np.arange(8), k=1, backend=backend)
    np.testing.assert_array_equal(twins.predictions, np.arange(8) ^ 1)  # the twin, never the row itself


def test_stratified_folds_partition_and_balance():
    labels = torch.as_tensor(np.repeat([0, 1, 2], [50, 30, 20]))
    splits = kfold_splits(100, 5, seed=0, labels=labels)
    val = np.concatenate([v.numpy() for _, v in splits])
    assert sorted(val.tolist()) == list(range(100))
    for train, v in splits:
        assert np.bincount(labels[v].numpy()).tolist() == [10, 6, 4]
        assert len(np.intersect1d(train.numpy(), v.numpy())) == 0


@pytest.mark.parametrize("case,match", [
    ("nan", "NaN"), ("single", "single class"), ("rows", "labels but the features"), ("folds", "cannot be split"),
    ("metric", "does not fit"),
])
def test_probe_bad_input(case, match):
    x, y = _classes(n=30)
    kwargs = {}
    if case == "nan":
        x[3, 2] = np.nan
    elif case == "single":
        y[:] = 1
    elif case == "rows":
        y = y[:-1]
    elif case == "folds":
        x, y = x[:4], np.array([0, 1, 0, 1])
    else:
        kwargs["metric"] = "r2"
    with pytest.raises(KernelInputError, match=match):
        linear_probe(x, y, grid=[1.0], **kwargs)


def test_kernel_ridge_bad_shapes_and_backend():
    with pytest.raises(ValueError, match="rows"):
        kernel_ridge_cv(np.ones((10, 2)), np.ones((9, 1)))
    with pytest.raises(KernelInputError, match="choose 'torch' or 'cuml'"):
        kernel_ridge_cv(np.ones((10, 2)), np.ones((10, 1)), backend="faiss")


@pytest.mark.skipif(importlib.util.find_spec("cuml") is not None, reason="cuML is installed; the missing-extra path cannot run")
def test_missing_gpu_backend_names_the_extra():
    x, y = _classes(n=30)
    with pytest.raises(MissingExtraError, match=r"fastinv\[gpu\]"):
        kernel_ridge_cv(x, y.astype(float), backend="cuml")
    with pytest.raises(KernelInputError, match="unknown backend"):
        linear_probe(x, y, backend="nope")


@pytest.mark.skipif(importlib.util.find_spec("cuml") is None, reason="cuML (the 'gpu' extra) is not installed")
def test_cuml_kernel_ridge_agrees_with_torch():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(100, 4))
    y = np.sin(x[:, :2])
    ours = kernel_ridge_cv(x, y, [1e-2, 1e-1], [0.1, 1.0], folds=3)
    theirs = kernel_ridge_cv(x, y, [1e-2, 1e-1], [0.1, 1.0], folds=3, backend="cuml")
    np.testing.assert_allclose(theirs.cv_mean, ours.cv_mean, atol=1e-3)


def test_kernel_ridge_solvers_agree_including_diagonal_shortcut():
    from fastinv.kernels.kernel_ridge import krr_dual_coef, squared_distances

    rng = np.random.default_rng(7)
    x = torch.as_tensor(rng.normal(size=(50, 30)))
    y = torch.as_tensor(rng.normal(size=(50, 2)))
    alphas = torch.tensor([1.0, 1e-2, 1e-4], dtype=torch.float64)
    dist = squared_distances(x, x)
    for gamma in (1e-3, 0.05, 100.0):
        kernel = torch.exp(-gamma * dist)
        expected = torch.stack([torch.linalg.solve(kernel + a * torch.eye(50, dtype=torch.float64), y) for a in alphas])
        for solver in ("cholesky", "eigh"):
            np.testing.assert_allclose(krr_dual_coef(kernel, y, alphas, solver).numpy(), expected.numpy(), rtol=1e-6, atol=1e-8)


@pytest.mark.skipif(importlib.util.find_spec("cuml") is None, reason="cuML (the 'gpu' extra) is not installed")
def test_cuml_probes_agree_with_torch():
    x, y = _classes()
    grid = np.logspace(-2, 2, 5)
    ours = linear_probe(x, y, grid=grid, folds=3, tol=1e-5, dtype=torch.float64)
    theirs = linear_probe(x, y, grid=grid, folds=3, tol=1e-6, backend="cuml")
    np.testing.assert_allclose(theirs.cv_mean, ours.cv_mean, atol=0.01)
    target = x[:, :3] @ np.ones((3, 2))
    np.testing.assert_allclose(linear_probe(x, target, "regression", grid, 3, backend="cuml").cv_mean,
                               linear_probe(x, target, "regression", grid, 3).cv_mean, atol=1e-4)


def test_logistic_cv_does_not_leak_validation_labels_across_folds():
    # Random labels on wide random features: nearly separable, so weak regularisation cannot
    # converge in max_iter; a fold warm-started from another fold's fit would remember its labels.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((160, 120)).astype(np.float32)
    y = rng.integers(0, 4, 160)
    result = linear_probe(x, y, "classification", grid=np.logspace(-6, -2, 5), folds=5, seed=0, max_iter=30)
    assert result.cv_mean.max() < 0.45


def test_warm_started_grid_reaches_the_cold_solutions():
    from fastinv.kernels.logistic import logistic_grid, logistic_path, principal_axes

    x, y = _classes()
    mean, axes, variances = principal_axes(torch.as_tensor(x))
    z, labels = (torch.as_tensor(x) - mean) @ axes, torch.as_tensor(y)
    lam = torch.as_tensor(np.logspace(3, -3, 16)[[5, 0, 9, 3, 15, 1, 12, 7, 2, 14, 4, 11, 6, 13, 8, 10]])  # any order
    cold = logistic_path(z, labels, 3, lam, variances, tol=1e-8)
    warm = logistic_grid(z, labels, 3, lam, variances, tol=1e-8)
    assert bool(cold.converged.all()) and bool(warm.converged.all())
    torch.testing.assert_close(warm.coef, cold.coef, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(warm.intercept, cold.intercept, rtol=1e-5, atol=1e-6)
    assert int(warm.iterations.sum()) < int(cold.iterations.sum())

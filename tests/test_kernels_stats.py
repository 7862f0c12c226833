"""Reference statistics, distances, significance and metrics against sklearn / scipy / numpy."""
import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from scipy.spatial.distance import pdist
from sklearn.covariance import ledoit_wolf as sk_ledoit_wolf
from sklearn.metrics import balanced_accuracy_score
from sklearn.metrics import r2_score as sk_r2

from fastinv.kernels import (KernelInputError, RunningMoments, group_pairwise, hoeffding_threshold, hoeffding_winner,
                             ledoit_wolf, mahalanobis, mean_per_class_accuracy, r2_score, reference_stats, whitened_cosine)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_ledoit_wolf_matches_sklearn(rng):
    x = rng.normal(size=(40, 60)) * rng.uniform(0.5, 3.0, 60) + 50.0
    expected, shrink = sk_ledoit_wolf(x)
    ours, ours_shrink = ledoit_wolf(x)
    assert ours_shrink == pytest.approx(shrink, rel=1e-9)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-9, atol=1e-12)


def test_streaming_moments_equal_one_pass(rng):
    x = rng.normal(size=(300, 12)) + 1e3
    moments = RunningMoments()
    for batch in np.array_split(x, 7):
        moments.update(batch)
    np.testing.assert_allclose(moments.mean().numpy(), x.mean(0), rtol=1e-12)
    np.testing.assert_allclose((moments.scatter() / 299).numpy(), np.cov(x.T), rtol=1e-8, atol=1e-10)
    assert moments.ledoit_wolf_shrinkage() == pytest.approx(sk_ledoit_wolf(x)[1], rel=1e-6)


def test_reference_stats_picks_estimator_and_whitens(rng):
    few = reference_stats(rng.normal(size=(30, 50)))
    many = reference_stats(rng.normal(size=(2000, 20)))
    assert few.estimator == "ledoit-wolf" and "30 < 10 x d=50" in few.reason
    assert many.estimator == "empirical" and many.shrinkage == 0.0
    for stats in (few, many):
        w, s = stats.whitening.numpy(), stats.covariance.numpy()
        np.testing.assert_allclose(w.T @ w @ s, np.eye(stats.d), atol=1e-8)


def test_singular_covariance_uses_eigen_whitening(rng):
    x = rng.normal(size=(10, 3)) @ rng.normal(size=(3, 6))
    stats = reference_stats(x, estimator="empirical")
    assert "eigendecomposition" in stats.reason and torch.isfinite(stats.whitening).all()


def test_paired_distances_match_scipy(rng):
    stats = reference_stats(rng.normal(size=(400, 8)) * rng.uniform(0.5, 2, 8))
    x = rng.normal(size=(25, 8))
    y = x + 0.2 * rng.normal(size=(25, 8))
    inv = np.linalg.inv(stats.covariance.numpy())
    expected = np.array([scipy_mahalanobis(a, b, inv) for a, b in zip(x, y)])
    np.testing.assert_allclose(mahalanobis(x, y, stats).numpy(), expected, rtol=1e-4)
    mu = stats.mean.numpy()
    num = np.einsum("nd,de,ne->n", x - mu, inv, y - mu)
    den = np.sqrt(np.einsum("nd,de,ne->n", x - mu, inv, x - mu) * np.einsum("nd,de,ne->n", y - mu, inv, y - mu))
    np.testing.assert_allclose(whitened_cosine(x, y, stats).numpy(), num / den, rtol=1e-4)


def test_group_pairwise_matches_per_group_reference(rng):
    stats = reference_stats(rng.normal(size=(300, 6)))
    x = rng.normal(size=(40, 6))
    groups = np.repeat(["a", "b", "c", "d", "e"], [2, 5, 5, 12, 16])
    scores = group_pairwise(x, groups, stats, max_pairs=50)
    inv, mu = np.linalg.inv(stats.covariance.numpy()), stats.mean.numpy()
    for k, name in enumerate(scores.groups):
        members = x[groups == name]
        assert scores.distance[k].item() == pytest.approx(pdist(members, "mahalanobis", VI=inv).mean(), rel=1e-4)
        gram = (members - mu) @ inv @ (members - mu).T
        norms = np.sqrt(np.diag(gram))
        assert scores.similarity[k].item() == pytest.approx((gram / np.outer(norms, norms)).mean(), rel=1e-4)
    assert scores.mean_similarity == pytest.approx(float(scores.similarity.mean()))


def test_group_of_one_is_rejected(rng):
    stats = reference_stats(rng.normal(size=(100, 3)))
    with pytest.raises(KernelInputError, match="single member"):
        group_pairwise(rng.normal(size=(3, 3)), [0, 0, 1], stats)


def test_hoeffding_two_and_three_way():
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 0.5, 2000)
    clear = hoeffding_winner({"A": base + 0.3, "B": base})
    assert clear.winner == "A" and clear.threshold == pytest.approx(hoeffding_threshold(2000, 0.05, 4.0))
    tie = hoeffding_winner({"A": base + 0.01, "B": base})
    assert tie.best == "A" and tie.winner is None
    three = hoeffding_winner({"A": base + 0.3, "B": base, "C": base + 0.29})
    assert three.delta_per_test == pytest.approx(0.025) and three.winner is None
    lower = hoeffding_winner({"A": base + 0.3, "B": base}, higher_is_better=False, bounds=(-1, 1))
    assert lower.winner == "B"


def test_metrics_match_sklearn(rng):
    true = rng.normal(size=(50, 3))
    true[:, 2] = 1.0
    pred = true + rng.normal(size=(50, 3))
    assert float(r2_score(torch.tensor(pred), torch.tensor(true))) == pytest.approx(sk_r2(true, pred), rel=1e-12)
    labels, guess = rng.integers(0, 4, 60), rng.integers(0, 4, 60)
    ours = mean_per_class_accuracy(torch.tensor(guess), torch.tensor(labels), 4)
    assert float(ours) == pytest.approx(balanced_accuracy_score(labels, guess))


@pytest.mark.parametrize("bad", ["nan", "shape"])
def test_distance_bad_input(rng, bad):
    stats = reference_stats(rng.normal(size=(100, 4)))
    x = rng.normal(size=(5, 4))
    y = x.copy()
    if bad == "nan":
        y[2, 1] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            mahalanobis(x, y, stats)
    else:
        with pytest.raises(ValueError, match="rows"):
            mahalanobis(x, y[:4], stats)


def test_identical_features_are_exactly_invariant(rng):
    stats = reference_stats(rng.normal(size=(300, 32)))
    x = torch.as_tensor(rng.normal(size=(500, 32)) * 5, dtype=torch.float32)
    assert torch.all(mahalanobis(x, x.clone(), stats) == 0)
    assert torch.all(whitened_cosine(x, x.clone(), stats) == 1)

"""The two-view loader API: shapes, dtypes, labels, sharding, epochs, resume and worker independence."""
import pytest
import torch

from fastinv.errors import UsageError
from fastinv.pipelines import LoaderConfig, build_two_view_loader, scan_image_folder


def _cfg(root, **kw):
    base = dict(root=root / "trainset", batch_size=8, workers=0, image_size=24, seed=5)
    base.update(kw)
    return LoaderConfig(**base)


def test_batches_have_the_promised_shape(tiny_world):
    loader = build_two_view_loader(_cfg(tiny_world))
    paths, labels, classes = scan_image_folder(tiny_world / "trainset")
    assert loader.classes == classes and loader.num_classes == len(classes) and loader.skipped == []
    batches = list(loader)
    assert len(batches) == len(loader) == len(paths) // 8
    for b in batches:
        for v in (b.view1, b.view2):
            assert v.shape == (8, 3, 24, 24) and v.dtype == torch.float32
            assert v.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(b.labels, torch.tensor(labels)[b.indices])
        assert not torch.equal(b.view1, b.view2)
    assert len(set(torch.cat([b.indices for b in batches]).tolist())) == len(batches) * 8


def test_uint8_output_is_the_unnormalised_float_output(tiny_world):
    u8 = next(iter(build_two_view_loader(_cfg(tiny_world, output="uint8", channels_last=False))))
    f32 = next(iter(build_two_view_loader(_cfg(tiny_world))))
    assert u8.view1.dtype == torch.uint8 and u8.view1.is_contiguous()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(u8.view1.float() / 255, f32.view1 * std + mean, atol=1e-5, rtol=0)


def test_workers_do_not_change_the_batches(tiny_world):
    a = list(build_two_view_loader(_cfg(tiny_world, workers=0)))
    b = list(build_two_view_loader(_cfg(tiny_world, workers=2)))
    assert all(torch.equal(x.view1, y.view1) and torch.equal(x.indices, y.indices) for x, y in zip(a, b))


def test_epochs_reshuffle_and_resume_is_exact(tiny_world):
    loader = build_two_view_loader(_cfg(tiny_world))
    loader.set_epoch(3)
    full = list(loader)
    loader.set_epoch(4)
    assert not torch.equal(next(iter(loader)).indices, full[0].indices)
    fresh = build_two_view_loader(_cfg(tiny_world))
    fresh.set_epoch(3)
    fresh.start_at(2)
    resumed = list(fresh)
    assert len(resumed) == len(full) - 2
    for x, y in zip(resumed, full[2:]):
        assert torch.equal(x.indices, y.indices) and torch.equal(x.view1, y.view1) and torch.equal(x.view2, y.view2)
    assert len(list(fresh)) == len(full)  # start_at applies to one iteration only


def test_ranks_split_the_epoch(tiny_world):
    n = len(scan_image_folder(tiny_world / "trainset")[0])
    shares = []
    for rank in range(3):
        loader = build_two_view_loader(_cfg(tiny_world, rank=rank, world_size=3, batch_size=2, drop_last=False))
        loader.set_epoch(1)
        shares.append(torch.cat([b.indices for b in loader]).tolist())
        assert len(loader) == -(-(-(-n // 3)) // 2)
    assert set(shares[0]) | set(shares[1]) | set(shares[2]) == set(range(n))
    assert sum(map(len, shares)) == 3 * -(-n // 3)  # padded by wrapping, as DistributedSampler


@pytest.mark.parametrize("kw, message", [
    (dict(backend="jax"), "valid: torch, dali, ffcv"),
    (dict(output="half"), "valid: float, uint8"),
    (dict(rank=2, world_size=2), "below world_size"),
    (dict(batch_size=0), "batch_size must be an integer >= 1"),
    (dict(recipe="nope"), "valid: default, spatial, appearance"),
])
def test_bad_settings_raise_usage_errors(tiny_world, kw, message):
    with pytest.raises(UsageError, match=message):
        build_two_view_loader(_cfg(tiny_world, **kw))


def test_start_at_out_of_range(tiny_world):
    loader = build_two_view_loader(_cfg(tiny_world))
    with pytest.raises(UsageError, match="batches per epoch"):
        loader.start_at(len(loader) + 1)


def test_dali_backend_honours_the_same_contract(tiny_world):
    pytest.importorskip("nvidia.dali")
    cfg = _cfg(tiny_world, backend="dali", recipe="spatial", workers=1)
    dali = build_two_view_loader(cfg)
    torch_batches = list(build_two_view_loader(_cfg(tiny_world, recipe="spatial")))
    dali.start_at(1)
    for d, t in zip(dali, torch_batches[1:]):
        assert torch.equal(d.indices, t.indices) and d.view1.is_contiguous(memory_format=torch.channels_last)
        assert (d.view1 - t.view1).abs().mean() < 0.05  # same draws; resampling kernels differ slightly

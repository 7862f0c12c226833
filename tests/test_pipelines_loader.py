"""The two-view loader API: shapes, dtypes, labels, sharding, epochs, resume, worker and transport
independence, and staying within a low open-file limit."""
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from fastinv.errors import UsageError
from fastinv.pipelines import LoaderConfig, build_two_view_loader, scan_image_folder


def _cfg(root, **kw):
    base = dict(root=root / "trainset", batch_size=8, workers=0, image_size=24, seed=5)
    base.update(kw)
    return LoaderConfig(**base)


def test_batches_have_the_promised_shape(tiny_world):
    loader = build_two_view_loader(_cfg(tiny_world))
    paths, labels, classes = scan_image_folder(tiny_world / "trainset")
    assert loader.classes == classes and loader.skipped == []
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


@pytest.mark.parametrize("output", ["float", "uint8"])
def test_a_consumer_that_lags_and_keeps_its_batches_sees_the_same_batches(tiny_world, output):
    """Worker processes render into a ring of reused buffers: while the consumer dawdles they run
    as far ahead as the DataLoader lets them, and every batch it kept stays as it was."""
    expected = list(build_two_view_loader(_cfg(tiny_world, workers=0, output=output)))
    kept = []
    for batch in build_two_view_loader(_cfg(tiny_world, workers=2, output=output)):
        time.sleep(0.1)
        kept.append(batch)
    assert len(kept) == len(expected) > 2 * 2 + 1  # more batches than the ring has slots
    for x, y in zip(expected, kept):
        assert torch.equal(x.indices, y.indices)
        assert torch.equal(x.view1, y.view1) and torch.equal(x.view2, y.view2)


@pytest.mark.parametrize("workers", [0, 2])
def test_decoding_in_the_calling_process_gives_the_same_batches(tiny_world, workers):
    """The accelerator transport (workers send bytes, the calling process decodes), forced on the CPU."""
    here = list(build_two_view_loader(_cfg(tiny_world, workers=workers, decode_in="workers")))
    main = list(build_two_view_loader(_cfg(tiny_world, workers=workers, decode_in="main")))
    assert len(here) == len(main) > 0
    for x, y in zip(here, main):
        assert torch.equal(x.indices, y.indices) and torch.equal(x.labels, y.labels)
        assert torch.equal(x.view1, y.view1) and torch.equal(x.view2, y.view2)
        assert y.view1.is_contiguous(memory_format=torch.channels_last)


_FILE_LIMIT_RUN = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
from fastinv.pipelines import LoaderConfig, build_two_view_loader
cfg = LoaderConfig(root=sys.argv[1], batch_size=128, workers=2, image_size=16, decode_in=sys.argv[2])
print(sum(batch.view1.shape[0] for batch in build_two_view_loader(cfg)))
"""


@pytest.mark.slow
@pytest.mark.parametrize("decode_in", ["main", "workers"])
def test_large_batches_stay_within_256_open_files(tmp_path, decode_in):
    """Each worker sends one buffer per batch. Were every image its own tensor, a worker with 2
    batches of 128 in flight would need over 256 descriptors ("Too many open files"), and the
    loader would hang."""
    rng = np.random.default_rng(0)
    for c in range(2):
        (tmp_path / f"c{c}").mkdir()
        for i in range(128):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / f"c{c}" / f"{i}.jpg")
    try:
        run = subprocess.run([sys.executable, "-c", _FILE_LIMIT_RUN, str(tmp_path), decode_in], capture_output=True,
                             text=True, timeout=300)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the loader hung under a 256-file limit: {(exc.stderr or b'')[-2000:]!r}")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split()[-1] == "256"


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
    (dict(decode_in="gpu"), "valid: auto, workers, main"),
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

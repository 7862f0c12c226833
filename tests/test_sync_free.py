"""The accelerator path of the torch backend never waits for the device: run on the CPU with the
batched strategy forced, the device work of a batch contains no op that makes the host wait for
an accelerator (reading values back, data-dependent output sizes, host data copied in)."""
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from fastinv.pipelines import TwoViewBatch
from fastinv.pipelines.augment import draw_views, image_sizes, render_views, to_float
from fastinv.pipelines.decode import decode_image
from fastinv.pipelines.recipes import RECIPES
from fastinv.pipelines.sampler import batch_generator
from fastinv.train.data import timed_batches

# aten ops that, on an accelerator, make the host wait: a value read back (item, bool, int, tolist
# of a device tensor), an output whose size depends on the data, host data copied in
_SYNC_OPS = {"_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "nonzero_static", "masked_select",
             "unique", "_unique", "_unique2", "unique_dim", "unique_consecutive", "bincount", "histc",
             "repeat_interleave.Tensor", "lift_fresh", "_assert_async"}
# Tensor methods that read values into Python (on the CPU some never reach the dispatcher)
_HOST_READS = {"tolist", "item", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__"}


def _blocking_move(name: str, args: tuple, kwargs: dict) -> bool:
    """A .to(device) / .cuda() without non_blocking: from host memory, a copy the host waits for."""
    if name == "cuda":
        return not kwargs.get("non_blocking", False)
    targets = [*args[1:2], kwargs.get("device")]
    return name == "to" and any(isinstance(t, (torch.device, str)) for t in targets) and not kwargs.get("non_blocking")


class _SyncOps(TorchDispatchMode):
    def __init__(self, seen: Counter):
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.name().split("::")[-1]
        packet = name.split(".")[0]
        if packet in _SYNC_OPS or name in _SYNC_OPS:
            self.seen[name] += 1
        if packet in ("index", "index_put", "index_put_", "_index_put_impl_"):  # indexing by a mask = nonzero
            indices = args[1] if len(args) > 1 else ()
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                self.seen[f"{name} (bool mask)"] += 1
        return func(*args, **(kwargs or {}))


class _HostReads(TorchFunctionMode):
    def __init__(self, seen: Counter):
        super().__init__()
        self.seen = seen

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name, kwargs = getattr(func, "__name__", ""), kwargs or {}
        if name in _HOST_READS:
            self.seen[f"Tensor.{name}"] += 1
        elif _blocking_move(name, args, kwargs):
            self.seen[f"Tensor.{name} (blocking)"] += 1
        return func(*args, **kwargs)


class count_syncs:
    """Context manager counting, by name, the ops run inside it that would wait for an accelerator."""

    def __init__(self):
        self.seen: Counter = Counter()
        self._modes = (_HostReads(self.seen), _SyncOps(self.seen))

    def __enter__(self) -> Counter:
        for mode in self._modes:
            mode.__enter__()
        return self.seen

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(*exc)


def test_the_counter_sees_each_kind_of_sync():
    x = torch.arange(6.0)
    with count_syncs() as seen:
        x.sum().item()
        x.tolist()
        bool(x[0])
        (x > 2).nonzero()
        x[x > 2]
        torch.tensor([1.0, 2.0])
        x.to("cpu")
        x.to(torch.device("cpu"), non_blocking=True)
        x.to(torch.float64)
    assert {"_local_scalar_dense", "Tensor.tolist", "Tensor.item", "Tensor.__bool__", "nonzero", "lift_fresh",
            "Tensor.to (blocking)"} <= set(seen)
    assert seen["Tensor.to (blocking)"] == 1 and any("bool mask" in name for name in seen)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Decoded JPEGs of three sizes (two share a size bucket), a batch of 12."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    images = []
    for i, (h, w) in enumerate([(60, 80), (80, 60), (64, 64), (60, 80)] * 3):
        path = root / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, quality=90)
        images.append(decode_image(path))
    return images


@pytest.mark.parametrize("recipe", ["default", "appearance", "spatial"])
def test_device_work_of_a_batch_never_waits_for_the_device(photos, recipe):
    recipe, device = RECIPES[recipe], torch.device("cpu")

    def one_batch(b: int) -> Counter:
        # host side, at draw time: draws, which image takes which op, size buckets
        plan = draw_views(recipe, image_sizes(photos), 32, batch_generator(0, 0, 0, b), device, batched=True)
        with count_syncs() as seen:  # device side
            views = render_views(photos, plan)
            for view in views:
                to_float(view, recipe.normalize, channels_last=True)
        assert views.shape == (2, 12, 3, 32, 32)
        return seen

    one_batch(0)  # first use builds the cached normalisation constants
    assert one_batch(1) == Counter()


class _ShortBatches:
    def __iter__(self):
        views = torch.rand(5, 3, 8, 8).contiguous(memory_format=torch.channels_last)
        yield TwoViewBatch(views, views.clone(), torch.arange(5), torch.arange(5) + 10)


def test_topping_up_a_short_batch_never_waits_for_the_device():
    batches = timed_batches(_ShortBatches(), torch.device("cpu"), channels_last=True, batch_size=8)
    with count_syncs() as seen:
        batch, _ = next(batches)
    assert seen == Counter()
    assert batch.view1.shape[0] == 8 and batch.indices.tolist() == [10, 11, 12, 13, 14, 10, 11, 12]

"""The DALI backend: a DALI graph compiled from the recipe, fed the torch backend's draws.

Every random parameter comes from `augment.sample_params` with `batch_generator(seed, epoch,
rank, b)` and enters the graph through external_source, so DALI and torch draw from one
distribution by construction, the determinism/resume contract holds, and the graph only has
to apply the ops correctly (what the statistical tests check). The graph: ROI decode of the
crop box (`decoders.image_slice`: only the box is decoded; `mixed` = nvJPEG on a GPU, `cpu`
without one), resize to the output size, colour ops on float HWC in [0, 1] - colour jitter with
the per-image random order through DALI conditionals (one `if` per step and op), grayscale as
luma on 3 channels, Gaussian blur with per-image sigma - and `crop_mirror_normalize` (flip,
normalise, CHW). Hue uses DALI's `hue` op, a rotation in YIQ space: close to, not identical
with, the HSV rotation of torchvision and PIL. Contrast blends with the image's mean luma like
torchvision. Files DALI cannot take (unreadable header) are skipped before the graph.
"""
import io
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fastinv.errors import DataError, MissingExtraError
from fastinv.pipelines.augment import JITTER_STEPS, sample_params
from fastinv.pipelines.config import LoaderConfig, TwoViewBatch, TwoViewLoaderBase
from fastinv.pipelines.ops import LUMA
from fastinv.pipelines.recipes import ColorJitter, GaussianBlur, Grayscale, Recipe
from fastinv.pipelines.sampler import ShardedBatches, batch_generator



def _dali():
    try:
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
        import nvidia.dali.math as dmath
        import nvidia.dali.types as types
    except ImportError as exc:
        raise MissingExtraError("DALI backend", "dali", exc) from None
    return dali, fn, dmath, types


def _header_size(data: bytes, path: str) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            img.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None
    return height, width


def _luma(fn, img):
    r, g, b = (fn.slice(img, c, 1, axes=[2]) for c in range(3))
    return LUMA[0] * r + LUMA[1] * g + LUMA[2] * b


def _blend(dmath, img, other, factor):
    return dmath.clamp(img * factor + other * (1.0 - factor), 0.0, 1.0)


def _jitter_step(k, img, factor, fn, dmath):
    if k == 0:
        return dmath.clamp(img * factor, 0.0, 1.0)
    if k == 1:
        return _blend(dmath, img, fn.reductions.mean(_luma(fn, img), axes=[0, 1, 2], keep_dims=True), factor)
    if k == 2:
        return _blend(dmath, img, _luma(fn, img), factor)
    return dmath.clamp(fn.hue(img, hue=factor * 360.0), 0.0, 1.0)


def _colour_graph(recipe: Recipe, img, inputs: dict, size: int, fn, dmath):
    """Apply the recipe's colour ops to float HWC images with the fed draws."""
    for i, op in enumerate(recipe.colour_ops):
        fires = inputs[f"apply{i}"]
        if isinstance(op, ColorJitter):
            for step in range(len(JITTER_STEPS)):
                for k in range(len(JITTER_STEPS)):
                    if fires & (inputs[f"order{i}_{k}"] == step):
                        img = _jitter_step(k, img, inputs[f"value{i}_{k}"], fn, dmath)
        elif isinstance(op, Grayscale):
            if fires:
                g = _luma(fn, img)
                img = fn.cat(g, g, g, axis=2)
        elif isinstance(op, GaussianBlur):
            if fires:
                img = fn.gaussian_blur(img, sigma=inputs[f"value{i}_0"], window_size=op.kernel_size(size))
    return img


def _input_names(recipe: Recipe) -> list[str]:
    names = ["anchor", "shape", "flip"]
    for i, op in enumerate(recipe.colour_ops):
        names.append(f"apply{i}")
        if isinstance(op, ColorJitter):
            names += [f"value{i}_{k}" for k in range(4)] + [f"order{i}_{k}" for k in range(4)]
        elif isinstance(op, GaussianBlur):
            names.append(f"value{i}_0")
    return names


def _view_inputs(recipe: Recipe, params) -> dict[str, list[np.ndarray]]:
    """Per-sample arrays for the graph's external sources, from one view's draws."""
    boxes = params.boxes.numpy()
    out = {"anchor": [np.array([b[1], b[0]], dtype=np.float32) for b in boxes],  # (x, y)
           "shape": [np.array([b[3], b[2]], dtype=np.float32) for b in boxes],   # (w, h)
           "flip": [np.array(f, dtype=np.int32) for f in params.flip.numpy()]}
    for i, (op, draw) in enumerate(zip(recipe.colour_ops, params.colour)):
        out[f"apply{i}"] = [np.array(a, dtype=bool) for a in draw.apply.numpy()]
        if isinstance(op, ColorJitter):
            rank = draw.order.argsort(dim=1).numpy()  # rank[i, k] = step at which op k runs
            for k in range(4):
                out[f"value{i}_{k}"] = [np.array(v, dtype=np.float32) for v in draw.values[:, k].numpy()]
                out[f"order{i}_{k}"] = [np.array(r, dtype=np.int32) for r in rank[:, k]]
        elif isinstance(op, GaussianBlur):
            out[f"value{i}_0"] = [np.array(v, dtype=np.float32) for v in draw.values[:, 0].numpy()]
    return out


class DaliTwoViewLoader(TwoViewLoaderBase):
    """Two-view loader over an ImageFolder with a DALI graph (see the module docstring)."""

    def __init__(self, cfg: LoaderConfig, recipe: Recipe, paths: list[str], labels: list[int], classes: list[str]):
        super().__init__(cfg, recipe, classes, len(paths))
        self._dali = _dali()
        self.paths = paths
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batches = ShardedBatches(len(paths), cfg.batch_size, cfg.seed, cfg.rank, cfg.world_size,
                                      cfg.shuffle, cfg.drop_last)
        self._names = _input_names(recipe)
        self._pipe = self._build()

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self.batches)

    def _build(self):
        dali, fn, dmath, types = self._dali
        gpu = self.device.type == "cuda"
        size, recipe, names = self.cfg.image_size, self.recipe, self._names
        norm = recipe.normalize
        uint8 = self.cfg.output == "uint8"
        mean = [0.0] * 3 if uint8 or norm is None else [255.0 * m for m in norm.mean]
        std = [1.0] * 3 if uint8 or norm is None else [255.0 * s for s in norm.std]
        scale = 1.0 if uint8 or norm is not None else 1.0 / 255.0

        @dali.pipeline_def(enable_conditionals=True)
        def graph():
            encoded = fn.external_source(name="encoded", dtype=types.UINT8, no_copy=False)
            views = []
            for v in range(2):
                inputs = {n: fn.external_source(name=f"{n}{v}", no_copy=False) for n in names}
                img = fn.decoders.image_slice(encoded, inputs["anchor"], inputs["shape"], device="mixed" if gpu else "cpu",
                                              output_type=types.RGB, axis_names="WH",
                                              normalized_anchor=False, normalized_shape=False)
                img = fn.resize(img, resize_x=size, resize_y=size, antialias=True, dtype=types.FLOAT) / 255.0
                img = _colour_graph(recipe, img, inputs, size, fn, dmath)
                views.append(fn.crop_mirror_normalize(img * 255.0, mirror=inputs["flip"], mean=mean, std=std,
                                                      scale=scale, dtype=types.UINT8 if uint8 else types.FLOAT,
                                                      output_layout="CHW"))
            return tuple(views)

        device_id = (self.device.index or 0) if gpu else None
        pipe = graph(batch_size=self.cfg.batch_size, num_threads=max(1, self.cfg.workers), device_id=device_id,
                     seed=self.cfg.seed, prefetch_queue_depth=1, exec_dynamic=True)
        pipe.build()
        return pipe

    def _feed(self, b: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        indices = self.batches.batch(self.epoch, b)
        encoded, sizes, keep, skipped = [], [], [], []
        for k, i in enumerate(indices):
            path = self.paths[i]
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
                if not data:
                    raise DataError(f"cannot decode image {path}: the file is empty")
                sizes.append(_header_size(data, path))
                encoded.append(np.frombuffer(data, dtype=np.uint8))
                keep.append(k)
            except (DataError, OSError) as exc:
                skipped.append((path, str(exc)))
        self._record_skipped(skipped)
        if not keep:
            return None
        gen = batch_generator(self.cfg.seed, self.epoch, self.cfg.rank, b)
        size_t = torch.tensor(sizes, dtype=torch.long)
        self._pipe.feed_input("encoded", encoded)
        for v in range(2):
            for name, arrays in _view_inputs(self.recipe, sample_params(self.recipe, size_t, gen)).items():
                self._pipe.feed_input(f"{name}{v}", arrays)
        idx = torch.from_numpy(indices[keep])
        return torch.from_numpy(self.labels[indices[keep]]), idx

    def _to_torch(self, out) -> torch.Tensor:
        if self.device.type == "cuda":
            out = out.as_cpu()
        x = torch.from_numpy(np.stack([np.asarray(t) for t in out]))
        fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        return x.to(self.device).contiguous(memory_format=fmt)

    def __iter__(self) -> Iterator[TwoViewBatch]:
        """Yield this rank's batches of the current epoch, from the `start_at` batch on."""
        for b in range(self._take_start(), len(self)):
            fed = self._feed(b)
            if fed is None:
                continue
            out1, out2 = self._pipe.run()
            labels, indices = fed
            yield TwoViewBatch(self._to_torch(out1), self._to_torch(out2), labels.to(self.device),
                               indices.to(self.device))

"""Statistical agreement, per recipe, of the torch and DALI backends with the torchvision+PIL
reference, inferred from outputs of images designed to reveal the draws (real JPEG files)."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from scipy import stats
from torchvision import transforms as T

from fastinv.pipelines import LoaderConfig, build_two_view_loader

H, W, OUT, COPIES = 60, 80, 32, 40
STRIPES = np.array([[230, 20, 20], [20, 200, 20], [20, 20, 230], [240, 230, 30]], dtype=np.uint8)


def _coordinates() -> np.ndarray:
    """R encodes x, G encodes y: a crop's box and flip can be read off its output."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 255 / (W - 1), y * 255 / (H - 1), np.full_like(x, 128.0)], -1).round().astype(np.uint8)


def _stripes() -> np.ndarray:
    """Saturated 8-px vertical stripes of distinct luma: greyscale, colour change and blur show."""
    return STRIPES[(np.arange(OUT) // 8) % 4][None].repeat(OUT, 0)


def _folder(root, pixels: np.ndarray):
    for c in range(2):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(COPIES // 2):
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.jpg", quality=100, subsampling=0)
    return root


def _views(root, backend: str, recipe: str, epochs: int) -> np.ndarray:
    cfg = LoaderConfig(root=root, recipe=recipe, backend=backend, image_size=OUT, batch_size=COPIES // 2, workers=1,
                       output="uint8", seed=11)
    loader, views = build_two_view_loader(cfg), []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        views += [v.numpy() for b in loader for v in (b.view1, b.view2)]
    return np.concatenate(views).astype(np.float64)  # (n, 3, OUT, OUT)


def _crop_stats(views: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(area fraction, aspect w/h, flipped) of each view of the coordinate image."""
    r, g = views[:, 0, OUT // 2], views[:, 1, :, OUT // 2]
    scale = OUT / (OUT - 1)
    w = np.abs(r[:, -1] - r[:, 0]) * (W - 1) / 255 * scale
    h = np.abs(g[:, -1] - g[:, 0]) * (H - 1) / 255 * scale
    return w * h / (W * H), w / h, r[:, -1] < r[:, 0]


def _colour_stats(views: np.ndarray, plain: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(greyscale, colour changed, blurred) flags of each view of the stripes image."""
    spread = np.abs(np.diff(views, axis=1)).max(axis=(1, 2, 3))
    changed = np.abs(views.mean(axis=(2, 3)) - plain.mean(axis=(0, 1))).max(axis=1) > 4
    luma = 0.2989 * views[:, 0] + 0.587 * views[:, 1] + 0.114 * views[:, 2]
    row = luma[:, OUT // 2, 2:-2]
    step = np.abs(np.diff(row, axis=1)).max(axis=1) / np.maximum(row.max(axis=1) - row.min(axis=1), 1e-6)
    return spread <= 3, changed, step < 0.85


def _reference(pixels: np.ndarray, transform, n: int) -> np.ndarray:
    torch.manual_seed(0)
    img = Image.fromarray(pixels)
    return np.stack([np.asarray(transform(img)).transpose(2, 0, 1) for _ in range(n)]).astype(np.float64)


class _PilBlur:
    def __call__(self, img):
        return img.filter(ImageFilter.GaussianBlur(radius=float(np.random.uniform(0.1, 2.0))))


def _moco(crop) -> T.Compose:
    return T.Compose([crop, T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), T.RandomGrayscale(0.2),
                      T.RandomApply([_PilBlur()], p=0.5)])


def _backends() -> list[str]:
    try:
        import nvidia.dali  # noqa: F401
        return ["torch", "dali"]
    except ImportError:
        return ["torch"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", _backends())
def test_spatial_crops_and_flips_match_the_reference(tmp_path, backend):
    pixels = _coordinates()
    np.random.seed(0)
    ref = _reference(pixels, T.Compose([T.RandomResizedCrop(OUT, scale=(0.2, 1.0)), T.RandomHorizontalFlip()]), 800)
    ours = _views(_folder(tmp_path, pixels), backend, "spatial", epochs=10)
    (ra, rr, rf), (oa, orr, of) = _crop_stats(ref), _crop_stats(ours)
    assert len(oa) == 800
    assert stats.ks_2samp(oa, ra).pvalue > 1e-3 and stats.ks_2samp(orr, rr).pvalue > 1e-3
    assert oa.min() > 0.17 and ra.min() > 0.17  # scale floor 0.2, minus read-out error
    assert abs(of.mean() - 0.5) < 0.07 and abs(rf.mean() - 0.5) < 0.07


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["default", "appearance"])
@pytest.mark.parametrize("backend", _backends())
def test_colour_op_rates_match_the_reference(tmp_path, backend, recipe):
    pixels = _stripes()
    crop = T.RandomResizedCrop(OUT, scale=(0.2, 1.0)) if recipe == "default" else T.CenterCrop(OUT)
    np.random.seed(0)
    ref = _colour_stats(_reference(pixels, _moco(crop), 800), pixels)
    ours = _colour_stats(_views(_folder(tmp_path, pixels), backend, recipe, epochs=10), pixels)
    grey, changed, blurred = (flags.mean() for flags in ours)
    assert abs(grey - 0.2) < 0.06 and abs(ref[0].mean() - 0.2) < 0.06
    assert abs(changed - ref[1].mean()) < 0.08  # jitter p 0.8 or greyscale p 0.2
    if recipe == "appearance":  # with the fixed centre crop, colour change and blur read cleanly
        assert abs(changed - 0.84) < 0.06  # 1 - (1 - 0.8)(1 - 0.2)
        assert abs(blurred - ref[2].mean()) < 0.1 and 0.2 < blurred < 0.5  # p 0.5 times P(sigma visible)

"""The batched per-image ops against torchvision's per-image functional ops."""
import pytest
import torch
import torchvision.transforms.v2.functional as F

from fastinv.pipelines import ops


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand((6, 3, 20, 24), generator=g)
    x[0] = 0.5  # flat grey: no hue
    x[1, :, :5] = 1.0  # saturated white block
    x[2, 0], x[2, 1] = x[2, 1], x[2, 1]  # ties between max channels
    return x


@pytest.mark.parametrize("ours, theirs, low, high", [
    (ops.adjust_brightness, F.adjust_brightness, 0.0, 2.0),
    (ops.adjust_contrast, F.adjust_contrast, 0.0, 2.0),
    (ops.adjust_saturation, F.adjust_saturation, 0.0, 2.0),
    (ops.adjust_hue, F.adjust_hue, -0.5, 0.5),
])
def test_colour_ops_match_per_image_torchvision(images, ours, theirs, low, high):
    factors = torch.linspace(low, high, images.shape[0])
    out = ours(images, factors)
    ref = torch.stack([theirs(img, float(f)) for img, f in zip(images, factors)])
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)


def test_grayscale_matches_torchvision(images):
    torch.testing.assert_close(ops.to_grayscale(images), F.rgb_to_grayscale(images, num_output_channels=3))


def test_blur_matches_per_image_torchvision(images):
    sigmas = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 3.0])
    out = ops.gaussian_blur(images, sigmas, 7)
    ref = torch.stack([F.gaussian_blur(img, [7, 7], [float(s), float(s)]) for img, s in zip(images, sigmas)])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_blur_on_images_smaller_than_the_kernel():
    x = torch.rand(2, 3, 4, 4)
    out = ops.gaussian_blur(x, torch.tensor([1.0, 2.0]), 23)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.std() < x.std()


def test_crop_resize_and_flip_match_torchvision():
    g = torch.Generator().manual_seed(1)
    imgs = [torch.randint(0, 256, (3, 40 + 7 * i, 50 - 3 * i), generator=g, dtype=torch.uint8) for i in range(4)]
    boxes = torch.tensor([[0, 0, 40, 50], [3, 5, 20, 30], [10, 2, 1, 1], [1, 1, 30, 20]])
    flip = torch.tensor([False, True, False, True])
    out = ops.crop_resize(imgs, boxes, flip, 16)
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.uint8
    assert out.is_contiguous(memory_format=torch.channels_last)
    for img, (t, l, h, w), f, got in zip(imgs, boxes.tolist(), flip, out):
        ref = F.resized_crop(img, t, l, h, w, [16, 16], antialias=True)
        ref = ref.flip(-1) if f else ref
        assert (got.int() - ref.int()).abs().max() <= 1


def test_both_jitter_strategies_agree():
    from fastinv.pipelines.augment import _jitter_by_subset, _jitter_per_image, sample_params
    from fastinv.pipelines.recipes import RECIPES
    params = sample_params(RECIPES["appearance"], torch.tensor([[16, 16]] * 12), torch.Generator().manual_seed(2))
    x = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    draw = params.colour[0]
    assert draw.apply.any() and not draw.apply.all()
    torch.testing.assert_close(_jitter_per_image(x, draw), _jitter_by_subset(x, draw), atol=1e-6, rtol=0)

"""The batched per-image ops against torchvision's per-image functional ops."""
import pytest
import torch
import torchvision.transforms.v2.functional as F

from fastinv.pipelines.ops import blur, crop, grayscale, jitter


@pytest.fixture
def images():
    g = torch.Generator().manual_seed(0)
    x = torch.rand((6, 3, 20, 24), generator=g)
    x[0] = 0.5  # flat grey: no hue
    x[1, :, :5] = 1.0  # saturated white block
    x[2, 0], x[2, 1] = x[2, 1], x[2, 1]  # ties between max channels
    return x


@pytest.mark.parametrize("ours, theirs, low, high", [
    (jitter.adjust_brightness, F.adjust_brightness, 0.0, 2.0),
    (jitter.adjust_contrast, F.adjust_contrast, 0.0, 2.0),
    (jitter.adjust_saturation, F.adjust_saturation, 0.0, 2.0),
    (jitter.adjust_hue, F.adjust_hue, -0.5, 0.5),
])
def test_colour_ops_match_per_image_torchvision(images, ours, theirs, low, high):
    factors = torch.linspace(low, high, images.shape[0])
    out = ours(images, factors)
    ref = torch.stack([theirs(img, float(f)) for img, f in zip(images, factors)])
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=0)


def test_grayscale_matches_torchvision(images):
    torch.testing.assert_close(grayscale.to_grayscale(images), F.rgb_to_grayscale(images, num_output_channels=3))


def test_blur_matches_per_image_torchvision(images):
    sigmas = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 3.0])
    out = blur.gaussian_blur(images, sigmas, 7)
    ref = torch.stack([F.gaussian_blur(img, [7, 7], [float(s), float(s)]) for img, s in zip(images, sigmas)])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_blur_on_images_smaller_than_the_kernel():
    x = torch.rand(2, 3, 4, 4)
    out = blur.gaussian_blur(x, torch.tensor([1.0, 2.0]), 23)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.std() < x.std()


# crops that cover the image, sit at its far corner, upscale, are one pixel or a thin strip
_IMAGE_SIZES = [(40, 50), (47, 47), (54, 44), (61, 41), (9, 120), (300, 200)]
_BOXES = [(0, 0, 40, 50), (27, 30, 20, 17), (10, 2, 1, 1), (1, 1, 60, 20), (3, 0, 2, 120), (13, 40, 211, 150)]
_FLIPS = [False, True, False, True, True, False]


def _crop_inputs():
    g = torch.Generator().manual_seed(1)
    images = [torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8) for h, w in _IMAGE_SIZES]
    return images, torch.tensor(_BOXES), torch.tensor(_FLIPS)


def _torchvision_crops(images, size, dtype=torch.uint8):
    refs = [F.resized_crop(img.to(dtype), t, l, h, w, [size, size], antialias=True) for img, (t, l, h, w) in
            zip(images, _BOXES)]
    return torch.stack([r.flip(-1) if f else r for r, f in zip(refs, _FLIPS)])


def test_per_image_crop_resize_and_flip_match_torchvision():
    images, _, _ = _crop_inputs()
    out = [crop.crop_resize(img, *box, flip, 16) for img, box, flip in zip(images, _BOXES, _FLIPS)]
    assert all(o.shape == (3, 16, 16) and o.dtype == torch.uint8 for o in out)
    assert out[0][None].is_contiguous(memory_format=torch.channels_last)
    assert (torch.stack(out).int() - _torchvision_crops(images, 16).int()).abs().max() <= 1


def test_batched_resample_matches_torchvision_on_a_padded_stack():
    images, boxes, flips = _crop_inputs()
    stack = torch.zeros((6, 3, 300, 200))
    for i, img in enumerate(images[:4]):  # smaller images padded with garbage: zero weights ignore it
        stack[i] = 77.0
        stack[i, :, :img.shape[1], :img.shape[2]] = img
    ref = _torchvision_crops(images[:4], 16, torch.float32)
    out = crop.resample(stack[:4], boxes[:4].float(), flips[:4], 16)
    torch.testing.assert_close(out, ref, atol=2e-3, rtol=0)  # torchvision's own float kernel, same weights
    for first, last in ((4, 5), (5, 6)):  # wide and tall stacks resample their axes in the other order
        img = images[first]
        x = img.float()[None]
        torch.testing.assert_close(crop.resample(x, boxes[first:last].float(), flips[first:last], 16),
                                   _torchvision_crops(images, 16, torch.float32)[first:last], atol=2e-3, rtol=0)


def test_resample_weights_rows_sum_to_one_inside_the_crop():
    w = crop.resample_weights(torch.tensor([3.0, 0.0]), torch.tensor([10.0, 1.0]), 20, 4)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 4))
    assert (w[0, :, :3] == 0).all() and (w[0, :, 13:] == 0).all() and (w[1, :, 1:] == 0).all()


def _plans(recipe, sizes, size, batched):
    from fastinv.pipelines.augment import plan_views, sample_params
    params = [sample_params(recipe, sizes, torch.Generator().manual_seed(seed), size) for seed in (3, 4)]
    return plan_views(recipe, params, sizes, size, torch.device("cpu"), batched)


@pytest.mark.parametrize("stack_elements", [1 << 27, 20_000])  # one stack per size bucket, or several
def test_both_crop_strategies_give_the_same_views(monkeypatch, stack_elements):
    from fastinv.pipelines import augment
    from fastinv.pipelines.recipes import RECIPES
    monkeypatch.setattr(augment, "_STACK_ELEMENTS", stack_elements)
    images, _, _ = _crop_inputs()
    images += [images[0].flip(-1).contiguous(), images[1][:, :45].contiguous()]  # same size; same bucket, smaller
    sizes = augment.image_sizes(images)
    per_image = augment.render_views(images, _plans(RECIPES["spatial"], sizes, 16, batched=False))
    batched = augment.render_views(images, _plans(RECIPES["spatial"], sizes, 16, batched=True))
    assert batched.shape == per_image.shape == (2, 8, 3, 16, 16) and batched.dtype == torch.uint8
    assert batched[0].is_contiguous(memory_format=torch.channels_last)
    assert (batched.int() - per_image.int()).abs().max() <= 1


@pytest.mark.parametrize("recipe", ["default", "appearance"])
def test_both_colour_strategies_agree(recipe):
    """The per-image steps (CPU) and the whole-batch steps (accelerators) on the same float images."""
    from fastinv.pipelines.augment import apply_colour, plan_views, sample_params
    from fastinv.pipelines.recipes import RECIPES
    sizes = torch.tensor([[16, 16]] * 24)
    params = sample_params(RECIPES[recipe], sizes, torch.Generator().manual_seed(2), 16)
    assert all(d.apply.any() and not d.apply.all() for d in params.colour)
    x = torch.rand(24, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    rows = []
    for image, step in zip(x, plan_views(RECIPES[recipe], [params], sizes, 16, torch.device("cpu"), False).views[0]):
        row = image[None]
        for fn, arg in step.colour:
            row = fn(row) if arg is None else fn(row, arg)
        rows.append(row)
    before = x.clone()
    torch.testing.assert_close(apply_colour(x, RECIPES[recipe], params), torch.cat(rows), atol=1e-5, rtol=0)
    assert torch.equal(x, before)  # the caller's images are left alone


def test_blur_kernel_cut_at_four_sigma_changes_nothing_visible():
    x = torch.rand(4, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    for sigma in (0.1, 0.6, 1.3, 2.0):
        k = blur.blur_kernel_size(sigma, 23)
        assert k % 2 == 1 and k <= 23
        full = blur.gaussian_blur(x, torch.full((4,), sigma), 23)
        assert (blur.gaussian_blur(x, torch.full((4,), sigma), k) - full).abs().max() < 1e-4
    assert blur.blur_kernel_size(2.0, 23) == 17 and blur.blur_kernel_size(9.0, 23) == 23

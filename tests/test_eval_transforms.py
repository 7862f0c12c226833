"""The evaluation transform registry: the reference grids, identity exactness, batched views against
one magnitude at a time, pixel scale, chunking, the seeded deform, and errors."""
from itertools import product

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import functional as TF
from torchvision.transforms.v2 import functional as F

from fastinv.errors import UsageError
from fastinv.pipelines.eval_transforms import EVAL_TRANSFORMS, clean_view, get_eval_transform, select_transforms
from fastinv.pipelines.evaltf.geometry import pil_box
from fastinv.pipelines.evaltf.views import resize_crop

IDENTITY = {"h_flip": False, "v_flip": False, "shear": (0.0, 0.0), "rotation": 0.0, "translation": (0.0, 0.0),
            "grayscale": False, "blur": float(torch.tensor(1e-5)), "sharpness": 1.0, "equalize": False, "invert": False}
GRID_SIZES = {"resized_crop": 256, "h_flip": 2, "v_flip": 2, "scale": 256, "shear": 256, "rotation": 256,
              "translation": 256, "deform": 256, "grayscale": 2, "brightness": 256, "contrast": 256,
              "saturation": 256, "hue": 256, "blur": 256, "sharpness": 256, "equalize": 2, "posterize": 7, "invert": 2}
RESIZE, CROP, SCALE = 64, 56, 0.25  # a miniature view: pixel magnitudes at a quarter


def _reference_grids() -> dict[str, list]:
    """The grids as the paper's ManualTransform builds them (k = 256, resize 256, crop 224), stray shear left out."""
    k, resize, crop = 256, 256, 224
    space = (1 - crop / resize) / 2
    shifts = torch.linspace(-space, space, 17)[:16].to(torch.float32)
    shears = torch.linspace(-160, 160, 17)[:16].to(torch.float32).tolist()
    corners = (torch.linspace(0, 0.25, 4) * resize).to(torch.float32).tolist()
    sizes = (torch.linspace(0.75, 0.25, 4) * resize).to(torch.float32).tolist()
    sigma = torch.linspace(10, 50, 8).to(int).repeat(32).tolist()
    factors = torch.linspace(0.25, 5, k).to(torch.float32).tolist()
    return {
        "rotation": torch.linspace(0, 360, k + 1)[:k].to(torch.float32).tolist(),
        "translation": [(float(a * resize), float(b * resize)) for a, b in product(shifts, shifts)],
        "scale": torch.linspace(1 / 4, 2, k).to(torch.float32).tolist(),
        "shear": [(a, b) for a, b in product(shears, shears)],
        "resized_crop": list(product(corners, corners, sizes, sizes)),
        "deform": [(float(s), i // 8) for i, s in enumerate(sigma)],
        "brightness": factors, "contrast": factors, "saturation": factors,
        "hue": torch.linspace(-0.5, 0.5, k).to(torch.float32).tolist(),
        "blur": torch.linspace(1e-5, 20.0, k).to(torch.float32).tolist(),
        "sharpness": torch.linspace(1, 30.0, k).to(torch.float32).tolist(),
        "posterize": torch.arange(1, 8).tolist(),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[torch.Tensor]:
    """Three real JPEGs of different shapes (a gradient with noise and a bright square), decoded."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("jpegs")
    decoded = []
    for k, (h, w) in enumerate([(75, 100), (100, 75), (81, 81)]):
        ramp = np.linspace(0, 255, w)[None, :, None] * np.array([1.0, 0.6, 0.2]) + np.linspace(0, 80, h)[:, None, None]
        pixels = np.clip(ramp + rng.normal(0, 25, (h, w, 3)), 0, 255)
        pixels[h // 4:h // 2, w // 3:w // 2] = (250, 240, 30)
        path = folder / f"{k}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=90)
        decoded.append(TF.pil_to_tensor(Image.open(path)))
    return decoded


def test_registry_has_the_papers_18_transforms_in_order() -> None:
    assert list(EVAL_TRANSFORMS) == list(GRID_SIZES)
    assert [t.name for t in select_transforms()] == list(GRID_SIZES)
    assert {t.kind for t in EVAL_TRANSFORMS.values()} == {"spatial", "appearance"}
    assert [t.name for t in EVAL_TRANSFORMS.values() if t.kind == "spatial"][-1] == "deform"


@pytest.mark.parametrize("name", list(GRID_SIZES))
def test_full_grid_sizes_follow_spec(name: str) -> None:
    assert len(get_eval_transform(name).grid()) == GRID_SIZES[name]


@pytest.mark.parametrize("name", sorted(_reference_grids()))
def test_grids_are_the_reference_codes_values_in_its_order(name: str) -> None:
    assert list(EVAL_TRANSFORMS[name].magnitudes) == _reference_grids()[name]


def test_grids_in_raw_pixels_and_the_truncated_deform_sigmas() -> None:
    assert EVAL_TRANSFORMS["resized_crop"].magnitudes[0] == (0.0, 0.0, 192.0, 192.0)
    assert EVAL_TRANSFORMS["resized_crop"].magnitudes[-1] == (64.0, 64.0, 64.0, 64.0)
    assert EVAL_TRANSFORMS["translation"].magnitudes[0] == (-16.0, -16.0)
    assert EVAL_TRANSFORMS["translation"].magnitudes[-1] == (14.0, 14.0)
    assert sorted({s for s, _ in EVAL_TRANSFORMS["deform"].magnitudes}) == [10, 15, 21, 27, 32, 38, 44, 50]
    assert EVAL_TRANSFORMS["deform"].magnitudes[:9] == (
        (10.0, 0), (15.0, 0), (21.0, 0), (27.0, 0), (32.0, 0), (38.0, 0), (44.0, 0), (50.0, 0), (10.0, 1))


@pytest.mark.parametrize("name", list(GRID_SIZES))
def test_identity_index_is_where_the_grid_has_one(name: str) -> None:
    transform = EVAL_TRANSFORMS[name]
    if name in IDENTITY:
        assert transform.magnitudes[transform.identity_index] == IDENTITY[name]
    else:
        assert transform.identity_index is None


@pytest.mark.parametrize("name", list(IDENTITY))
def test_identity_magnitude_gives_the_clean_view_bit_for_bit(name: str, images: list[torch.Tensor]) -> None:
    transform = EVAL_TRANSFORMS[name]
    for image in images:
        for resize, crop, scale in ((RESIZE, CROP, SCALE), (90, 72, 1.0)):
            view = transform.views(image, [transform.identity_index], resize=resize, crop=crop, pixel_scale=scale)
            assert torch.equal(view[0], clean_view(image, resize, crop, normalise=False))


@pytest.mark.parametrize("size", [1, 5, 16, 100])
@pytest.mark.parametrize("name", ["rotation", "shear", "translation", "brightness", "posterize"])
def test_subsampled_grid_is_even_and_keeps_identity(name: str, size: int) -> None:
    transform = EVAL_TRANSFORMS[name]
    positions = transform.grid_indices(size)
    assert len(positions) == min(size, len(transform.magnitudes)) and positions == sorted(set(positions))
    if transform.identity_index is not None:
        assert transform.identity_index in positions
    if size >= 5 and transform.identity_index is None:
        assert positions[0] == 0 and positions[-1] == len(transform.magnitudes) - 1
    assert transform.grid(size) == [transform.magnitudes[i] for i in positions]


@pytest.mark.parametrize("name", list(GRID_SIZES))
def test_views_are_float_crops_on_the_images_device(name: str, images: list[torch.Tensor]) -> None:
    transform = EVAL_TRANSFORMS[name]
    positions = transform.grid_indices(3)
    views = transform.views(images[0], positions, resize=RESIZE, crop=CROP, pixel_scale=SCALE)
    assert views.shape == (len(positions), 3, CROP, CROP) and views.dtype == torch.float32
    assert views.device == images[0].device and 0.0 <= float(views.min()) and float(views.max()) <= 1.0
    clean = clean_view(images[0], RESIZE, CROP, normalise=False)
    changed = [i for i, p in enumerate(positions) if p != transform.identity_index]
    assert all(not torch.equal(views[i], clean) for i in changed), "a non-identity magnitude must change the view"


@pytest.mark.parametrize("name", list(GRID_SIZES))
def test_batched_and_chunked_views_equal_one_magnitude_at_a_time(name: str, images: list[torch.Tensor]) -> None:
    transform = EVAL_TRANSFORMS[name]
    positions = transform.grid_indices(12)
    image = images[0]
    together = transform.views(image, positions, resize=RESIZE, crop=CROP, pixel_scale=SCALE)
    alone = torch.cat([transform.views(image, [p], resize=RESIZE, crop=CROP, pixel_scale=SCALE) for p in positions])
    chunked = transform.views(image, positions, resize=RESIZE, crop=CROP, pixel_scale=SCALE,
                              chunk_pixels=3 * image.shape[1] * image.shape[2])
    assert torch.equal(together, alone) and torch.equal(together, chunked)


def _pil(image: torch.Tensor) -> Image.Image:
    return TF.to_pil_image(image)


def _one_at_a_time(name: str, image: torch.Tensor, m, scale: float):
    """The transform at magnitude `m` by one library call on the native image (before Resize + CenterCrop)."""
    pil = _pil(image)
    calls = {
        "h_flip": lambda: F.horizontal_flip(image) if m else image,
        "v_flip": lambda: F.vertical_flip(image) if m else image,
        "scale": lambda: TF.pil_to_tensor(TF.affine(pil, angle=0.0, translate=[0, 0], scale=m, shear=[0.0, 0.0])),
        "shear": lambda: TF.pil_to_tensor(TF.affine(pil, angle=0.0, translate=[0, 0], scale=1.0, shear=list(m))),
        "rotation": lambda: TF.pil_to_tensor(TF.rotate(pil, m)),
        "translation": lambda: TF.pil_to_tensor(TF.affine(pil, angle=0.0, translate=[v * scale for v in m], scale=1.0,
                                                          shear=[0.0, 0.0])),
        "grayscale": lambda: TF.pil_to_tensor(TF.rgb_to_grayscale(pil, 3)) if m else image,
        "brightness": lambda: F.adjust_brightness(image, m),
        "contrast": lambda: TF.pil_to_tensor(TF.adjust_contrast(pil, m)),
        "saturation": lambda: TF.pil_to_tensor(TF.adjust_saturation(pil, m)),
        "hue": lambda: F.adjust_hue(image, m),
        "blur": lambda: F.gaussian_blur(image, [2 * round(11 * scale) + 1] * 2, [m * scale] * 2),
        "sharpness": lambda: TF.pil_to_tensor(TF.adjust_sharpness(pil, m)),
        "equalize": lambda: F.equalize(image) if m else image,
        "posterize": lambda: F.posterize(image, m),
        "invert": lambda: F.invert(image) if m else image,
    }
    return calls[name]()


@pytest.mark.parametrize("name", [n for n in GRID_SIZES if n not in ("resized_crop", "deform")])
def test_views_match_the_library_call_one_magnitude_at_a_time(name: str, images: list[torch.Tensor]) -> None:
    transform = EVAL_TRANSFORMS[name]
    for image in images:
        positions = transform.grid_indices(9)
        ours = transform.views(image, positions, resize=RESIZE, crop=CROP, pixel_scale=SCALE) * 255
        for view, position in zip(ours, positions):
            reference = resize_crop(_one_at_a_time(name, image, transform.magnitudes[position], SCALE), RESIZE, CROP)
            difference = (view - reference.float()).abs()
            assert float(difference.mean()) < 0.02 and float(difference.max()) < 1.01, (name, position)


@pytest.mark.parametrize("crop", [CROP, 24])
def test_resized_crop_takes_pil_rounded_boxes_in_raw_pixels(crop: int, images: list[torch.Tensor]) -> None:
    transform = EVAL_TRANSFORMS["resized_crop"]
    positions = transform.grid_indices(16)
    for image in images:
        ours = transform.views(image, positions, resize=RESIZE, crop=crop, pixel_scale=SCALE) * 255
        for view, position in zip(ours, positions):
            box = pil_box(*transform.applied(transform.magnitudes[position], SCALE))
            reference = F.resized_crop(image.float(), *box, [crop, crop], antialias=True).round().clamp(0, 255)
            assert float((view - reference).abs().mean()) < 0.02 and float((view - reference).abs().max()) < 1.01


def test_pixel_scale_multiplies_pixel_magnitudes(images: list[torch.Tensor]) -> None:
    translation = EVAL_TRANSFORMS["translation"]
    far, near = translation.magnitudes.index((-16.0, 12.0)), translation.magnitudes.index((-8.0, 6.0))
    assert torch.equal(translation.views(images[1], [far], pixel_scale=0.5), translation.views(images[1], [near]))
    assert translation.applied((-16.0, 12.0), 0.25) == (-4.0, 3.0)
    assert EVAL_TRANSFORMS["resized_crop"].applied((64.0, 0.0, 192.0, 128.0), 0.5) == (32.0, 0.0, 96.0, 64.0)
    assert EVAL_TRANSFORMS["blur"].applied(20.0, 0.5) == 10.0
    assert EVAL_TRANSFORMS["deform"].applied((50.0, 7), 0.5) == (25.0, 7)
    assert EVAL_TRANSFORMS["rotation"].applied(90.0, 0.5) == 90.0


def test_deform_is_seeded_per_grid_position_and_a_generator_overrides_it(images: list[torch.Tensor]) -> None:
    deform = EVAL_TRANSFORMS["deform"]
    image = images[0]
    first = deform.views(image, [0, 1], resize=RESIZE, crop=CROP, pixel_scale=SCALE)
    assert torch.equal(first, deform.views(image, [0, 1], resize=RESIZE, crop=CROP, pixel_scale=SCALE))
    assert not torch.equal(first[0], first[1])
    drawn = [deform.views(image, [0], resize=RESIZE, crop=CROP, pixel_scale=SCALE,
                          generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[0][0], first[0])


def test_bad_inputs_say_what_is_wrong(images: list[torch.Tensor]) -> None:
    rotation = EVAL_TRANSFORMS["rotation"]
    with pytest.raises(UsageError, match="valid: resized_crop"):
        get_eval_transform("zoom")
    with pytest.raises(UsageError, match="grid positions run from 0 to 255"):
        rotation.views(images[0], [256])
    with pytest.raises(UsageError, match=r"\(3, H, W\) uint8"):
        rotation.views(images[0].float() / 255, [0])
    with pytest.raises(UsageError, match=r"\(3, H, W\) uint8"):
        rotation.views(images[0][None], [0])
    with pytest.raises(UsageError, match="at least 8 x 8"):
        rotation.views(images[0][:, :5], [0])
    with pytest.raises(UsageError, match="crop <= resize"):
        rotation.views(images[0], [0], resize=64, crop=72)
    with pytest.raises(UsageError, match="pixel_scale must be positive"):
        rotation.views(images[0], [0], pixel_scale=0.0)
    with pytest.raises(UsageError, match="at least 1"):
        rotation.grid(0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(GRID_SIZES))
def test_cuda_matches_cpu(name: str, images: list[torch.Tensor]) -> None:
    transform = EVAL_TRANSFORMS[name]
    positions = transform.grid_indices(9)
    on_gpu = transform.views(images[0].cuda(), positions, resize=RESIZE, crop=CROP, pixel_scale=SCALE)
    assert on_gpu.device.type == "cuda"
    assert float((on_gpu.cpu() - transform.views(images[0], positions, resize=RESIZE, crop=CROP,
                                                  pixel_scale=SCALE)).abs().mean()) * 255 < 1.0

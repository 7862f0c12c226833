"""The evaluation transform registry: SPEC grids, identity exactness, batching, dtypes, errors."""
import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms.v2.functional import pil_to_tensor

from fastinv.pipelines.eval_transforms import EVAL_TRANSFORMS, clean_view, get_eval_transform, select_transforms, to_working_size

IDENTITY = {"h_flip": False, "v_flip": False, "shear": (0.0, 0.0), "rotation": 0.0, "translation": (0.0, 0.0),
            "grayscale": False, "blur": 1e-5, "sharpness": 1.0, "equalize": False, "invert": False}
GRID_SIZES = {"resized_crop": 256, "h_flip": 2, "v_flip": 2, "scale": 256, "shear": 256, "rotation": 256,
              "translation": 256, "deform": 256, "grayscale": 2, "brightness": 256, "contrast": 256,
              "saturation": 256, "hue": 256, "blur": 256, "sharpness": 256, "equalize": 2, "posterize": 7, "invert": 2}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """Four real JPEGs of different shapes (a smooth gradient with noise), decoded and squared at 64 px."""
    rng = np.random.default_rng(0)
    folder = tmp_path_factory.mktemp("jpegs")
    images = []
    for k, (h, w) in enumerate([(80, 120), (120, 80), (96, 96), (70, 100)]):
        ramp = np.linspace(0, 255, w)[None, :, None] * np.array([1.0, 0.6, 0.2]) + np.linspace(0, 80, h)[:, None, None]
        pixels = np.clip(ramp + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{k}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        images.append(to_working_size(pil_to_tensor(Image.open(path)), 64))
    return torch.stack(images)


def test_registry_has_the_papers_18_transforms_in_order() -> None:
    assert list(EVAL_TRANSFORMS) == list(GRID_SIZES)
    assert [t.name for t in select_transforms()] == list(GRID_SIZES)
    assert {t.kind for t in EVAL_TRANSFORMS.values()} == {"spatial", "appearance"}
    assert [t.name for t in EVAL_TRANSFORMS.values() if t.kind == "spatial"][-1] == "deform"


@pytest.mark.parametrize("name", list(GRID_SIZES))
def test_full_grid_sizes_follow_spec(name: str) -> None:
    assert len(get_eval_transform(name).grid()) == GRID_SIZES[name]


def test_grids_hold_spec_values() -> None:
    assert EVAL_TRANSFORMS["rotation"].grid()[1] == pytest.approx(360 / 256)
    assert EVAL_TRANSFORMS["shear"].grid()[0] == (-160.0, -160.0) and EVAL_TRANSFORMS["shear"].grid()[-1] == (140.0, 140.0)
    assert EVAL_TRANSFORMS["translation"].grid()[-1] == pytest.approx((0.0546875, 0.0546875))
    assert sorted({m[2] for m in EVAL_TRANSFORMS["resized_crop"].grid()}) == [0.25, 0.417, 0.583, 0.75]
    assert sorted({m[0] for m in EVAL_TRANSFORMS["deform"].grid()}) == pytest.approx(list(np.linspace(10, 50, 8)))
    assert EVAL_TRANSFORMS["posterize"].grid() == [1, 2, 3, 4, 5, 6, 7]
    assert 1.0 not in EVAL_TRANSFORMS["brightness"].grid() and 1.0 not in EVAL_TRANSFORMS["scale"].grid()


@pytest.mark.parametrize("name", list(GRID_SIZES))
def test_identity_index_is_where_the_spec_grid_has_one(name: str) -> None:
    transform = EVAL_TRANSFORMS[name]
    if name in IDENTITY:
        assert transform.magnitudes[transform.identity_index] == IDENTITY[name]
    else:
        assert transform.identity_index is None


@pytest.mark.parametrize("name", list(IDENTITY))
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_identity_magnitude_is_bit_exact(name: str, dtype: torch.dtype, batch: torch.Tensor) -> None:
    images = batch if dtype == torch.uint8 else batch.float() / 255
    transform = EVAL_TRANSFORMS[name]
    identity = transform.magnitudes[transform.identity_index]
    assert torch.equal(transform.apply(images, identity), images)
    assert torch.equal(transform.view(images, identity), clean_view(images, 64, 56))


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
def test_batched_apply_equals_one_image_at_a_time(name: str, batch: torch.Tensor) -> None:
    transform = EVAL_TRANSFORMS[name]
    magnitude = transform.grid(3)[-1]
    together = transform.apply(batch, magnitude)
    alone = torch.cat([transform.apply(image[None], magnitude) for image in batch])
    assert together.dtype == torch.uint8 and torch.equal(together, alone)
    assert not torch.equal(together, batch[..., :together.shape[-2], :together.shape[-1]]), "a non-identity magnitude must change the images"


@pytest.mark.parametrize("name", list(GRID_SIZES))
def test_view_is_a_normalised_crop_for_float_and_uint8(name: str, batch: torch.Tensor) -> None:
    transform = EVAL_TRANSFORMS[name]
    magnitude = transform.grid(2)[-1]
    from_uint8 = transform.view(batch, magnitude)
    from_float = transform.view(batch.float() / 255, magnitude)
    assert from_uint8.shape == (4, 3, 56, 56) and from_uint8.dtype == torch.float32
    assert float((from_uint8 - from_float).abs().mean()) < 0.1  # uint8 rounds each step (sharpness 30 amplifies it)


def test_deform_is_seeded_and_generator_overrides_it(batch: torch.Tensor) -> None:
    deform = EVAL_TRANSFORMS["deform"]
    first, second = deform.grid()[0], deform.grid()[1]
    assert torch.equal(deform.apply(batch, first), deform.apply(batch, first))
    assert not torch.equal(deform.apply(batch, first), deform.apply(batch, second))
    drawn = [deform.apply(batch, first, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[0], deform.apply(batch, first))


def test_clean_view_sizes_and_normalisation() -> None:
    image = torch.full((3, 300, 400), 128, dtype=torch.uint8)
    out = clean_view(image, 256, 224)
    assert out.shape == (3, 224, 224)
    assert torch.allclose(out[:, 0, 0], (128 / 255 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))
    assert clean_view(image, 224, 224, normalise=False).shape == (3, 224, 224)


def test_bad_inputs_say_how_to_fix_them(batch: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="valid: resized_crop"):
        get_eval_transform("zoom")
    with pytest.raises(ValueError, match="not on the rotation grid"):
        EVAL_TRANSFORMS["rotation"].apply(batch, 45.5)
    with pytest.raises(ValueError, match="square working image"):
        EVAL_TRANSFORMS["rotation"].apply(batch[..., :60], 0.0)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        EVAL_TRANSFORMS["invert"].apply(batch[:, :1], True)
    with pytest.raises(ValueError, match="at least 1"):
        EVAL_TRANSFORMS["rotation"].grid(0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(GRID_SIZES))
def test_cuda_matches_cpu(name: str, batch: torch.Tensor) -> None:
    transform = EVAL_TRANSFORMS[name]
    magnitude = transform.grid(3)[-1]
    on_gpu = transform.view(batch.cuda(), magnitude)
    assert on_gpu.device.type == "cuda"
    assert float((on_gpu.cpu() - transform.view(batch, magnitude)).abs().mean()) < 0.01

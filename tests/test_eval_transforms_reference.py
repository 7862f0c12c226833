"""The batched evaluation transforms against a per-image PIL reference on a real photograph.

The reference is the paper's kind of path: torchvision.transforms.functional on PIL images
(Resize 256 + CenterCrop 256, the transform, Resize 256 + CenterCrop 224). Ours decodes to a
uint8 tensor, brings it to the working square, applies the transform to the whole batch and
takes the view. The figure is the mean |difference| in 0..255 levels over the final views,
worst over an evenly sampled grid of 9 magnitudes; the tolerances are the module docstring's.
"""

import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torchvision.transforms import functional as TF

from fastinv.pipelines.eval_transforms import EVAL_TRANSFORMS, to_working_size
from fastinv.pipelines.evaltf.deform import deform, deform_field

GRID = 9
# worst-magnitude mean |difference| allowed, 0..255 levels (measured figures in the module docstring)
TOLERANCE = {
    "resized_crop": 0.2, "h_flip": 0.05, "v_flip": 0.05, "scale": 0.05, "shear": 0.05, "rotation": 0.1,
    "translation": 0.05, "grayscale": 1.0, "brightness": 0.05, "contrast": 1.0, "saturation": 1.5, "hue": 1.2,
    "blur": 0.05, "sharpness": 0.05, "equalize": 0.05, "posterize": 0.05, "invert": 0.05,
}
# transforms whose view does not depend on the working square: pointwise, or local with a support
# (blur radius 11 px, sharpness 1 px) inside the 16 px margin that CenterCrop 224 drops
SQUARE_INDEPENDENT = ("h_flip", "v_flip", "grayscale", "brightness", "saturation", "hue", "blur", "sharpness", "posterize", "invert")


def _pil_op(name: str, image: Image.Image, m) -> Image.Image:
    side = image.size[0]
    if name == "resized_crop":
        top, left, height, width = (round(v * side) for v in m)
        return TF.resized_crop(image, top, left, height, width, [224, 224])
    geometric = {
        "h_flip": lambda: TF.hflip(image) if m else image,
        "v_flip": lambda: TF.vflip(image) if m else image,
        "scale": lambda: TF.affine(image, angle=0.0, translate=[0, 0], scale=m, shear=[0.0, 0.0]),
        "shear": lambda: TF.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=list(m)),
        "rotation": lambda: TF.rotate(image, m),
        "translation": lambda: TF.affine(image, angle=0.0, translate=[round(m[0] * side), round(m[1] * side)], scale=1.0, shear=[0.0, 0.0]),
        "grayscale": lambda: TF.rgb_to_grayscale(image, 3) if m else image,
        "brightness": lambda: TF.adjust_brightness(image, m),
        "contrast": lambda: TF.adjust_contrast(image, m),
        "saturation": lambda: TF.adjust_saturation(image, m),
        "hue": lambda: TF.adjust_hue(image, m),
        "blur": lambda: TF.gaussian_blur(image, [23, 23], [m, m]),
        "sharpness": lambda: TF.adjust_sharpness(image, m),
        "equalize": lambda: TF.equalize(image) if m else image,
        "posterize": lambda: TF.posterize(image, m),
        "invert": lambda: TF.invert(image) if m else image,
    }
    return geometric[name]()


def _reference_view(name: str, photo: Image.Image, m, *, square: bool = True) -> torch.Tensor:
    work = TF.resize(photo, 256)
    work = TF.center_crop(work, 256) if square else work
    out = _pil_op(name, work, m)
    if name != "resized_crop":
        out = TF.center_crop(TF.resize(out, 256), 224)
    return TF.pil_to_tensor(out).float()


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    """Three crops (square-ish, landscape, portrait) of a real JPEG photograph."""
    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
    return [photo, photo.crop((0, 100, 512, 400)), photo.crop((100, 0, 400, 600))]


def worst_difference(name: str, photos: list[Image.Image], *, square: bool = True) -> float:
    """Worst mean |ours - reference| (0..255 levels) over GRID magnitudes of transform `name`.

    With square=False the reference transforms the Resize-256 image at its own aspect ratio (no
    working square): the figure is then the gap the working square introduces.
    """
    transform = EVAL_TRANSFORMS[name]
    batch = torch.stack([to_working_size(TF.pil_to_tensor(p)) for p in photos])
    worst = 0.0
    for m in transform.grid(GRID):
        ours = transform.view(batch, m, normalise=False) * 255
        reference = torch.stack([_reference_view(name, p, m, square=square) for p in photos])
        worst = max(worst, float((ours - reference).abs().mean()))
    return worst


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_matches_per_image_pil_reference(name: str, photos: list[Image.Image]) -> None:
    figure = worst_difference(name, photos)
    print(f"{name}: worst mean |diff| {figure:.3f} levels (tolerance {TOLERANCE[name]})")
    assert figure <= TOLERANCE[name], f"{name}: {figure:.3f} > {TOLERANCE[name]}"


@pytest.mark.parametrize("name", SQUARE_INDEPENDENT)
def test_working_square_does_not_change_pointwise_and_local_transforms(name: str, photos: list[Image.Image]) -> None:
    figure = worst_difference(name, photos, square=False)
    assert figure <= TOLERANCE[name], f"{name}: gap {figure:.3f} > {TOLERANCE[name]}"


def _albumentations_style(image: np.ndarray, matrix: np.ndarray, elastic: np.ndarray) -> np.ndarray:
    """Affine warp by `matrix` then elastic remap, as albumentations composes them (zero border)."""
    size = image.shape[0]
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    x = xs + elastic[..., 0]
    y = ys + elastic[..., 1]
    sx = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2]
    sy = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2]
    return np.stack([ndimage.map_coordinates(image[..., c], [sy, sx], order=1, mode="constant", cval=0.0)
                     for c in range(image.shape[-1])], -1)


def test_deform_composes_affine_then_elastic_like_albumentations(photos: list[Image.Image]) -> None:
    work = to_working_size(TF.pil_to_tensor(photos[0])).float() / 255
    field = deform_field(256, 50.0, 7, 3)
    ours = deform(work[None], field.displacement)[0].permute(1, 2, 0).numpy()
    reference = _albumentations_style(work.permute(1, 2, 0).numpy().astype(np.float64), field.matrix.numpy(), field.elastic.numpy())
    inside = np.abs(ours - reference)[2:-2, 2:-2]
    assert float(np.abs(ours - work.permute(1, 2, 0).numpy()).mean()) > 0.02, "the deform should move the picture"
    assert float(inside.mean()) * 255 < 0.5


def test_deform_jitter_moves_square_corners_by_at_most_alpha_affine() -> None:
    shifts = []
    for draw in range(32):
        matrix = deform_field(256, 10.0, 0, draw).matrix
        corners = torch.tensor([[213.0, 213.0, 1.0], [213.0, 43.0, 1.0], [43.0, 43.0, 1.0]], dtype=torch.float64)
        shifts.append(corners @ matrix.T - corners[:, :2])
    shifts = torch.stack(shifts)
    assert float(shifts.abs().max()) <= 50.0 + 1e-9
    assert float(shifts.abs().max()) > 40.0, "32 uniform draws on [-50, 50] should reach past 40 px"

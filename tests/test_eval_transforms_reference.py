"""The views against the paper's path on real photographs at their native resolution.

The reference is what the paper's `ManualTransform.T` does with a PIL image: the
torchvision.transforms.functional call at the image's native size (without the stray 1-degree
shear of translation and scale), then Resize 256 + CenterCrop 224 (the resized crop goes
straight to 224). The photograph is matplotlib's grace_hopper.jpg cut to 500x375 and 375x500,
and upscaled to 1600x1200. The figure is the mean |difference| in 0..255 levels, worst over an
evenly sampled grid of magnitudes; the tolerances sit above the module docstring's figures.
Deform is random: its field is compared with a rebuild of albumentations' ElasticTransform.
"""
import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage, stats
from torchvision.transforms import functional as TF

from fastinv.pipelines.eval_transforms import EVAL_TRANSFORMS
from fastinv.pipelines.evaltf.deform import ELASTIC_TAPS, anchor_points, deform, deform_fields

# worst-magnitude mean |difference| allowed, 0..255 levels (measured figures in the module docstring)
TOLERANCE = {name: 0.05 for name in EVAL_TRANSFORMS if name != "deform"} | {"resized_crop": 0.3, "hue": 1.0}


def reference_view(name: str, photo: Image.Image, m) -> torch.Tensor:
    """The paper's view of `photo` at magnitude `m`: (3, 224, 224) float in 0..255."""
    calls = {
        "resized_crop": lambda: TF.resized_crop(photo, *m, [224, 224]),
        "h_flip": lambda: TF.hflip(photo) if m else photo,
        "v_flip": lambda: TF.vflip(photo) if m else photo,
        "scale": lambda: TF.affine(photo, angle=0.0, translate=[0, 0], scale=m, shear=[0.0, 0.0]),
        "shear": lambda: TF.affine(photo, angle=0.0, translate=[0, 0], scale=1.0, shear=list(m)),
        "rotation": lambda: TF.rotate(photo, m),
        "translation": lambda: TF.affine(photo, angle=0.0, translate=list(m), scale=1.0, shear=[0.0, 0.0]),
        "grayscale": lambda: TF.rgb_to_grayscale(photo, 3) if m else photo,
        "brightness": lambda: TF.adjust_brightness(photo, m),
        "contrast": lambda: TF.adjust_contrast(photo, m),
        "saturation": lambda: TF.adjust_saturation(photo, m),
        "hue": lambda: TF.adjust_hue(photo, m),
        "blur": lambda: TF.gaussian_blur(photo, [23, 23], [m, m]),
        "sharpness": lambda: TF.adjust_sharpness(photo, m),
        "equalize": lambda: TF.equalize(photo) if m else photo,
        "posterize": lambda: TF.posterize(photo, m),
        "invert": lambda: TF.invert(photo) if m else photo,
    }
    out = calls[name]()
    if name != "resized_crop":
        out = TF.center_crop(TF.resize(out, 256), 224)
    return TF.pil_to_tensor(out).float()


def _photo() -> Image.Image:
    return Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    """The photograph (512 x 600) cut to landscape 500x375 and portrait 375x500 (W x H)."""
    photo = _photo()
    return {"500x375": photo.crop((6, 100, 506, 475)), "375x500": photo.crop((68, 50, 443, 550))}


def worst_difference(name: str, photo: Image.Image, grid: int) -> float:
    """Worst mean |ours - reference| (0..255 levels) over `grid` magnitudes of transform `name`."""
    transform = EVAL_TRANSFORMS[name]
    positions = transform.grid_indices(grid)
    ours = transform.views(TF.pil_to_tensor(photo), positions) * 255
    return max(float((view - reference_view(name, photo, transform.magnitudes[p])).abs().mean())
               for view, p in zip(ours, positions))


@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_matches_the_papers_pil_path(name: str, photos: dict[str, Image.Image]) -> None:
    for size, photo in photos.items():
        figure = worst_difference(name, photo, 9)
        print(f"{name} {size}: worst mean |diff| {figure:.3f} levels (tolerance {TOLERANCE[name]})")
        assert figure <= TOLERANCE[name], f"{name} at {size}: {figure:.3f} > {TOLERANCE[name]}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TOLERANCE))
def test_matches_the_papers_pil_path_on_a_large_photo(name: str) -> None:
    large = _photo().crop((0, 100, 512, 484)).resize((1600, 1200), Image.Resampling.BICUBIC)
    figure = worst_difference(name, large, 5)
    print(f"{name} 1600x1200: worst mean |diff| {figure:.3f} levels (tolerance {TOLERANCE[name]})")
    assert figure <= TOLERANCE[name], f"{name} at 1600x1200: {figure:.3f} > {TOLERANCE[name]}"


def _albumentations_affine(height: int, width: int, rng: np.random.RandomState) -> np.ndarray:
    """The random affine map (2, 3) of albumentations 1.x ElasticTransform(alpha_affine=50): its
    three points, placed from (H // 2, W // 2) read as (x, y), each jittered by U[-50, 50] px."""
    centre = np.float32((height, width)) // 2
    side = min(height, width) // 3
    points = np.float32([centre + side, [centre[0] + side, centre[1] - side], centre - side])
    moved = points + rng.uniform(-50, 50, size=points.shape).astype(np.float32)
    return np.linalg.solve(np.hstack([points, np.ones((3, 1))]).astype(np.float64), moved.astype(np.float64)).T


def _albumentations_elastic(height: int, width: int, sigma: float, rng: np.random.RandomState) -> np.ndarray:
    """The elastic offsets (2, H, W) of ElasticTransform(alpha=1, sigma, approximate=True): U[-1, 1]
    noise through a 17 x 17 Gaussian (OpenCV's kernel, BORDER_REFLECT_101)."""
    taps = np.arange(ELASTIC_TAPS) - ELASTIC_TAPS // 2
    kernel = np.exp(-taps ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    noise = rng.rand(2, height, width).astype(np.float32) * 2 - 1
    return ndimage.convolve1d(ndimage.convolve1d(noise, kernel, 1, mode="mirror"), kernel, 2, mode="mirror")


def _corner_moves(matrices: np.ndarray, height: int, width: int) -> np.ndarray:
    """How far each draw's affine map moves the image corners, raw px: (k * 4,)."""
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], dtype=np.float64)
    moved = np.einsum("kij,cj->kci", matrices, corners)
    return np.linalg.norm(moved - corners[None, :, :2], axis=-1).ravel()


@pytest.mark.parametrize("height, width", [(375, 500), pytest.param(1200, 1600, marks=pytest.mark.slow)])
def test_deform_field_statistics_match_albumentations_at_native_resolution(height: int, width: int) -> None:
    deform_grid = EVAL_TRANSFORMS["deform"]
    positions = list(range(0, 256, 8))
    sigmas = [deform_grid.magnitudes[p][0] for p in positions]
    ours = deform_fields(height, width, sigmas, positions)
    rng = np.random.RandomState(0)
    their_matrices = np.stack([_albumentations_affine(height, width, rng) for _ in range(256)])
    their_elastic = np.stack([_albumentations_elastic(height, width, s, rng) for s in sigmas[:4]])
    points = anchor_points(height, width)
    homogeneous = torch.cat([points, torch.ones(3, 1, dtype=torch.float64)], 1)
    shifts = (homogeneous @ ours.matrices.transpose(1, 2) - points).numpy()
    assert 45.0 < np.abs(shifts).max() <= 50.0 + 1e-9, "the jitter is U[-50, 50] raw px whatever the image size"
    assert stats.kstest(shifts.ravel() / 50.0, "uniform", args=(-1, 2)).pvalue > 0.01
    our_moves = _corner_moves(ours.matrices.numpy(), height, width)
    their_moves = _corner_moves(their_matrices, height, width)
    assert stats.ks_2samp(our_moves, their_moves).pvalue > 0.01
    assert np.median(our_moves) == pytest.approx(np.median(their_moves), rel=0.2)
    assert float(ours.elastic[:4].std()) == pytest.approx(float(their_elastic.std()), rel=0.05)
    assert 0.02 < float(ours.elastic.std()) < 0.05, "a 17-tap kernel leaves about 0.58 / 17 px of elastic motion"


def _two_stage(image: np.ndarray, matrix: np.ndarray, elastic: np.ndarray) -> np.ndarray:
    """Affine warp then elastic remap, each bilinear with mirrored borders, as albumentations runs them."""
    height, width = image.shape[:2]
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    warp = [inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2],
            inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]]
    remap = [ys + elastic[1], xs + elastic[0]]
    out = []
    for c in range(3):
        warped = ndimage.map_coordinates(image[..., c], warp, order=1, mode="mirror")
        out.append(ndimage.map_coordinates(warped, remap, order=1, mode="mirror"))
    return np.stack(out, -1)


def test_deform_resamples_like_albumentations_two_stages(photos: dict[str, Image.Image]) -> None:
    image = TF.pil_to_tensor(photos["500x375"])
    fields = deform_fields(image.shape[1], image.shape[2], [50.0], [7])
    ours = deform(image, fields)[0].permute(1, 2, 0).numpy().astype(np.float64)
    reference = _two_stage(image.permute(1, 2, 0).numpy().astype(np.float64), fields.matrices[0].numpy(),
                           fields.elastic[0].numpy().astype(np.float64))
    assert np.abs(ours - image.permute(1, 2, 0).numpy()).mean() > 5.0, "the deform should move the picture"
    assert np.abs(ours - reference).mean() < 1.0

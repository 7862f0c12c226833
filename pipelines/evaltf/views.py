"""The geometry around an evaluation transform: the clean view, the final Resize + CenterCrop, and
the square working size of the real-world and downstream sets.

Images are (3, H, W) or (B, 3, H, W) tensors, uint8 in [0, 255] or float in [0, 1], on any
device. Resizes are bilinear with antialiasing (torchvision's default, close to PIL's).
"""
import torch
from torchvision.transforms.v2 import functional as F

from fastinv.errors import UsageError
from fastinv.pipelines.ops.normalize import normalise

WORKING_SIZE = 256


def _check_images(images: torch.Tensor) -> None:
    """UsageError unless `images` is a (3, H, W) or (B, 3, H, W) tensor, uint8 or float."""
    if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4) or images.shape[-3] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise UsageError(f"images must be a (3, H, W) or (B, 3, H, W) tensor, got {shape}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise UsageError(f"images must be uint8 in [0, 255] or float in [0, 1], got {images.dtype}")


def resize_crop(images: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """Resize the short side to `resize` and centre-crop a `crop` square (dtype kept).

    The one place the views' final geometry is computed: the clean view and every transformed
    view go through it, so a transform at its identity magnitude gives the clean view's pixels.
    """
    if crop > resize:
        raise UsageError(f"crop ({crop}) cannot exceed resize ({resize})")
    return F.center_crop(F.resize(images, [resize], antialias=True), [crop, crop])


def to_working_size(images: torch.Tensor, size: int = WORKING_SIZE) -> torch.Tensor:
    """Resize the short side to `size` and centre-crop a `size` x `size` square (dtype kept).

    Brings images of different shapes to one size so that they stack into a batch.
    """
    _check_images(images)
    if size < 8:
        raise UsageError(f"working size must be at least 8 px, got {size}")
    return resize_crop(images, size, size)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Return float32 images in [0, 1] (uint8 input is scaled by 1/255; float input is cast)."""
    _check_images(images)
    return F.to_dtype(images, torch.float32, scale=True)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] minus the ImageNet mean, divided by the ImageNet std, per channel."""
    return normalise(to_float(images))


def clean_view(images: torch.Tensor, resize: int = 256, crop: int = 224, *, normalise: bool = True) -> torch.Tensor:
    """The model input: Resize `resize` (short side) + CenterCrop `crop`, float, ImageNet-normalised.

    SPEC: Resize 256 + CenterCrop 224 for the synthetic suite and pre-training evaluation;
    Resize 224 + CenterCrop 224 for the real-world and downstream sets. With
    `normalise=False` the result is float in [0, 1]; for one native image (3, H, W) uint8 it is
    then bit-identical to `EvalTransform.views` at an identity magnitude.
    """
    _check_images(images)
    out = resize_crop(images, resize, crop)
    return normalize(out) if normalise else to_float(out)

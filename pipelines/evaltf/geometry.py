"""Geometric transforms of one native image, batched over magnitudes: affine warps and resized crops.

Affine warps follow the reference path exactly: torchvision's `affine` on a PIL image builds an
inverse matrix about the centre (W/2, H/2) (`affine_matrix`), torchvision's `rotate` hands the
angle to PIL's `Image.rotate`, which builds its own (`rotation_matrix`), and PIL resamples with
nearest neighbour: output pixel (x, y) takes the source pixel that contains the matrix image of
(x + 0.5, y + 0.5). PIL computes that position in 16.16 fixed point when the matrix rotates or
shears, and in double precision when it only scales and shifts; `nearest_affine` does the same
integer and float arithmetic for k matrices at once, so positions that fall exactly on a pixel
edge (rotation by 90 degrees of an image with an odd side, scale 2) go the way PIL sends them.
Torchvision's tensor `affine` rounds such ties to even instead: a one-pixel shift, up to 5 grey
levels in the final view.

`resized_crops` takes k boxes in raw pixels, rounded at their corners as PIL's `Image.crop`
rounds them, and resamples each straight to the output square in float: bilinear, one
`grid_sample` for all boxes when no box is larger than the output (the grids' boxes are
smaller: an upsampling, where antialiasing changes nothing), torchvision's antialiased
`resized_crop` box by box otherwise. PIL's fixed-point resampling differs from the float
result by about 0.2 grey levels on average.
"""
import math
from collections.abc import Sequence

import torch
from torch.nn.functional import grid_sample, pad
from torchvision.transforms.v2 import functional as F

Matrix = tuple[float, float, float, float, float, float]
_FIXED = 65536
_FIXED_LIMIT = 32768.0


def affine_matrix(width: int, height: int, *, angle: float = 0.0, translate: Sequence[float] = (0.0, 0.0),
                  scale: float = 1.0, shear: Sequence[float] = (0.0, 0.0)) -> Matrix:
    """The inverse matrix (output to source, PIL's pixel-edge coordinates) of torchvision's `affine`
    on a PIL image: rotate `angle` and shear `shear` (degrees), scale, then shift by `translate` px."""
    rot, shear_x, shear_y = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = width * 0.5, height * 0.5
    a = math.cos(rot - shear_y) / math.cos(shear_y)
    b = -(a * math.tan(shear_x) + math.sin(rot))
    c = math.sin(rot - shear_y) / math.cos(shear_y)
    d = math.cos(rot) - c * math.tan(shear_x)
    m0, m1, m3, m4 = d / scale, -b / scale, -c / scale, a / scale
    px, py = cx + translate[0], cy + translate[1]
    return m0, m1, cx - m0 * px - m1 * py, m3, m4, cy - m3 * px - m4 * py


def rotation_matrix(width: int, height: int, angle: float) -> Matrix:
    """The inverse matrix PIL's `Image.rotate` uses for a counter-clockwise turn by `angle` degrees."""
    turn = -math.radians(angle % 360.0)
    cos, sin = round(math.cos(turn), 15), round(math.sin(turn), 15)
    cx, cy = width / 2, height / 2
    return cos, sin, cos * -cx + sin * -cy + cx, -sin, cos, -sin * -cx + cos * -cy + cy


def _fits_fixed_point(matrix: Matrix, width: int, height: int) -> bool:
    m0, m1, m2, m3, m4, m5 = matrix
    return all(abs(x * m0 + y * m1 + m2) < _FIXED_LIMIT and abs(x * m3 + y * m4 + m5) < _FIXED_LIMIT
               for x, y in ((0, 0), (width, height), (0, height), (width, 0)))


def _fixed(value: float) -> int:
    return math.floor(value * _FIXED + 0.5)


def _source_index(matrices: list[Matrix], width: int, height: int, device: torch.device, fixed: bool) -> torch.Tensor:
    """(g, H, W) int32: each output pixel's source pixel, as PIL computes it, as a flat index into the
    image framed by one black pixel on every side (sources outside the image land on the frame)."""
    kind = torch.int32 if fixed else torch.float64
    xs = torch.arange(width, dtype=kind, device=device).view(1, 1, width)
    ys = torch.arange(height, dtype=kind, device=device).view(1, height, 1)
    starts = [(m[2] + m[0] * 0.5 + m[1] * 0.5, m[5] + m[3] * 0.5 + m[4] * 0.5) for m in matrices]
    rows = [(m[0], m[1], s[0], m[3], m[4], s[1]) for m, s in zip(matrices, starts)]
    if fixed:
        rows = [tuple(_fixed(v) for v in r) for r in rows]
    coeff = torch.tensor(rows, dtype=kind, device=device).view(-1, 6, 1, 1)
    column = (coeff[:, 2] + xs * coeff[:, 0]).add(ys * coeff[:, 1])
    row = (coeff[:, 5] + xs * coeff[:, 3]).add(ys * coeff[:, 4])
    if fixed:
        column, row = column.bitwise_right_shift_(16), row.bitwise_right_shift_(16)
    else:
        column, row = column.floor_().to(torch.int32), row.floor_().to(torch.int32)
    return row.clamp_(-1, height).add_(1).mul_(width + 2).add_(column.clamp_(-1, width)).add_(1)


def nearest_affine(image: torch.Tensor, matrices: Sequence[Matrix]) -> torch.Tensor:
    """Warp `image` (3, H, W) uint8 by k inverse matrices with PIL's nearest-neighbour rule:
    (k, 3, H, W) uint8 (channels-last in memory), black where the source lies outside the image."""
    _, height, width = image.shape
    fixed = [(m[1] != 0 or m[3] != 0) and _fits_fixed_point(m, width, height) for m in matrices]
    index = torch.empty((len(matrices), height, width), dtype=torch.int32, device=image.device)
    for use_fixed in (True, False):
        members = [i for i, f in enumerate(fixed) if f == use_fixed]
        if members:
            index[members] = _source_index([matrices[i] for i in members], width, height, image.device, use_fixed)
    # one 4-byte word per pixel (R, G, B, 0) so that a pixel is gathered in one read
    framed = torch.cat([pad(image, (1, 1, 1, 1)), image.new_zeros(1, height + 2, width + 2)])
    words = framed.permute(1, 2, 0).contiguous().view(torch.int32).view(-1)
    picked = words[index.view(-1)].view(torch.uint8).view(len(matrices), height, width, 4)
    return picked[..., :3].permute(0, 3, 1, 2)


def sample(image: torch.Tensor, grid: torch.Tensor, *, mode: str, align_corners: bool,
           padding_mode: str = "zeros") -> torch.Tensor:
    """`grid_sample` of one image (3, H, W) uint8 at k grids (k, Ho, Wo, 2): (k, 3, Ho, Wo) uint8.

    The k grids are stacked along the output height so that the image is read in place, not
    copied k times; values are rounded to uint8 levels.
    """
    count, out_h, out_w, _ = grid.shape
    source = image.unsqueeze(0).to(torch.float32)
    out = grid_sample(source, grid.reshape(1, count * out_h, out_w, 2), mode=mode, padding_mode=padding_mode,
                      align_corners=align_corners)
    out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out.view(3, count, out_h, out_w).transpose(0, 1).contiguous()


def pil_box(top: float, left: float, height: float, width: float) -> tuple[int, int, int, int]:
    """(top, left, height, width) in whole pixels, with the corners rounded as PIL's crop rounds them."""
    y0, x0 = round(top), round(left)
    return y0, x0, round(top + height) - y0, round(left + width) - x0


def resized_crops(image: torch.Tensor, boxes: Sequence[tuple[float, float, float, float]], size: int) -> torch.Tensor:
    """Crop k boxes (top, left, height, width) in px from `image` (3, H, W) uint8 and resize each to
    `size` x `size`: (k, 3, size, size) uint8. Box parts outside the image are black (PIL's crop)."""
    whole = [pil_box(*box) for box in boxes]
    if any(max(h, w) > size for _, _, h, w in whole):
        source = image.to(torch.float32)
        out = torch.stack([F.resized_crop(source, *box, [size, size], antialias=True) for box in whole])
        return out.round_().clamp_(0, 255).to(torch.uint8)
    params = torch.tensor(whole, dtype=torch.float32, device=image.device)
    top, left, height, width = (params[:, i].view(-1, 1) for i in range(4))
    steps = torch.arange(size, dtype=torch.float32, device=image.device) + 0.5
    rows = torch.minimum(torch.maximum(top + steps * (height / size) - 0.5, top), top + height - 1)
    cols = torch.minimum(torch.maximum(left + steps * (width / size) - 0.5, left), left + width - 1)
    _, img_h, img_w = image.shape
    gy = ((2 * rows + 1) / img_h - 1).view(-1, size, 1).expand(-1, size, size)
    gx = ((2 * cols + 1) / img_w - 1).view(-1, 1, size).expand(-1, size, size)
    return sample(image, torch.stack([gx, gy], -1), mode="bilinear", align_corners=False)

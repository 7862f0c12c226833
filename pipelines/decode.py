"""Decode image files to RGB uint8 tensors: libjpeg-turbo/libpng on CPU, batched nvJPEG on CUDA.

torchvision.io decodes JPEG (grayscale and CMYK included, converted to RGB) and PNG whatever the
file name says (it looks at the bytes). Formats it does not read (BMP, WebP, GIF, TIFF) go
through PIL. Anything neither can read raises DataError naming the file: zero-byte, truncated
or corrupt files are never decoded into garbage.

A batch of files travels between processes as one buffer: `pack_bytes` lays the files' bytes end
to end with their offsets, `unpack_bytes` gives back one view per file without copying.
"""
import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.io import ImageReadMode, decode_image as _tv_decode, decode_jpeg

from fastinv.errors import DataError

_JPEG_MAGIC = b"\xff\xd8\xff"
_JPEG_END = b"\xff\xd9"


def read_file(path: str | Path) -> bytes:
    """The raw bytes of an image file; DataError if unreadable or empty."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read image {path}: {exc.strerror or exc}") from None
    if not data:
        raise DataError(f"cannot decode image {path}: the file is empty")
    return data


def read_bytes(path: str | Path) -> torch.Tensor:
    """The raw bytes of a file as a 1-D uint8 tensor; DataError if unreadable or empty."""
    return torch.frombuffer(bytearray(read_file(path)), dtype=torch.uint8)


def pack_bytes(chunks: list[bytes]) -> tuple[torch.Tensor, np.ndarray]:
    """Files' bytes end to end in one uint8 tensor, and the (N + 1,) offsets where each starts."""
    offsets = np.zeros(len(chunks) + 1, dtype=np.int64)
    np.cumsum([len(c) for c in chunks], out=offsets[1:])
    return torch.from_numpy(np.frombuffer(b"".join(chunks), dtype=np.uint8).copy()), offsets


def unpack_bytes(buffer: torch.Tensor, offsets: np.ndarray) -> list[torch.Tensor]:
    """One 1-D uint8 view of `buffer` per file of a `pack_bytes` buffer."""
    bounds = offsets.tolist()
    return [buffer[start:stop] for start, stop in zip(bounds[:-1], bounds[1:])]


def _is_jpeg(data: torch.Tensor) -> bool:
    return data.numel() >= 3 and data[:3].numpy().tobytes() == _JPEG_MAGIC


def _is_whole_jpeg(data: torch.Tensor) -> bool:
    """A JPEG that starts and ends with its markers: the ones nvJPEG is trusted with (a truncated
    file, which it may decode into garbage, goes to libjpeg-turbo, which says so)."""
    return _is_jpeg(data) and data[-2:].numpy().tobytes() == _JPEG_END


def decode_bytes(data: torch.Tensor, path: str | Path = "<bytes>") -> torch.Tensor:
    """Decode encoded bytes (1-D uint8 tensor) to a (3, H, W) uint8 RGB tensor on the CPU."""
    if data.numel() == 0:
        raise DataError(f"cannot decode image {path}: the file is empty")
    try:
        return _tv_decode(data, mode=ImageReadMode.RGB)
    except RuntimeError as tv_error:
        if _is_jpeg(data):  # a JPEG libjpeg-turbo rejects is corrupt or truncated
            raise DataError(f"cannot decode image {path}: {str(tv_error).split(', ')[-1]}") from None
    try:
        with Image.open(io.BytesIO(data.numpy().tobytes())) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous()


def decode_image(path: str | Path) -> torch.Tensor:
    """Decode one image file to a (3, H, W) uint8 RGB tensor; DataError naming the file if undecodable."""
    return decode_bytes(read_bytes(path), path)


def decode_many(datas: list[torch.Tensor], paths: list[str], device: torch.device
                ) -> tuple[list[torch.Tensor | None], list[tuple[str, str]]]:
    """Decode a batch of encoded images onto `device`: (images, skipped).

    On CUDA, whole JPEGs go through one batched nvJPEG call; other files, and JPEGs nvJPEG
    refuses, are decoded on the CPU and moved. Undecodable entries are None in `images` and
    listed as (path, reason) in `skipped`."""
    images: list[torch.Tensor | None] = [None] * len(datas)
    skipped: list[tuple[str, str]] = []
    pending = list(range(len(datas)))
    if device.type == "cuda":
        jpegs = [i for i in pending if _is_whole_jpeg(datas[i])]
        if jpegs:
            try:
                decoded = decode_jpeg([datas[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
                for i, img in zip(jpegs, decoded):
                    images[i] = img
                pending = [i for i in pending if images[i] is None]
            except RuntimeError:
                pass  # one bad file fails the whole nvJPEG call: fall back to per-image decoding
    for i in pending:
        try:
            images[i] = decode_bytes(datas[i], paths[i]).to(device, non_blocking=True)
        except DataError as exc:
            skipped.append((paths[i], str(exc)))
    return images, skipped

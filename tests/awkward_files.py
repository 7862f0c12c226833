"""A folder of awkward and broken image files that every reader must handle: GOOD decode (to RGB),
BAD are skipped and named."""
import io
from pathlib import Path

import numpy as np
from PIL import Image

GOOD = frozenset({"rgb.jpg", "gray.jpg", "cmyk.jpg", "png_named.jpg", "palette.png", "one_pixel.jpg", "large.jpg"})
BAD = frozenset({"truncated.jpg", "corrupt.jpg", "empty.jpg", "garbage.jpg", "text.jpg", "text.png"})
HEADER_ONLY_VALID = ("truncated.jpg", "corrupt.jpg")  # what a header-only check takes for a 320x240 JPEG


def gradient(h: int, w: int) -> np.ndarray:
    """An (h, w, 3) uint8 image: red rising left to right, green top to bottom, blue constant."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 90)], -1).astype(np.uint8)


def _noise_jpeg() -> bytearray:
    """A 240x320 JPEG of noise: long entropy-coded data behind its header."""
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    data = io.BytesIO()
    Image.fromarray(noise).save(data, "JPEG", quality=95)
    return bytearray(data.getvalue())


def write_awkward_folder(root: Path) -> Path:
    """Write an ImageFolder under `root` with class ok (GOOD: grayscale, CMYK, PNG named .jpg,
    palette PNG, 1x1, 4000x3000 and a plain RGB gradient they derive from) and class bad (BAD: a
    truncated and a corrupt JPEG with valid headers, an empty file, random bytes, text named
    .jpg and .png); return `root`."""
    ok, bad = root / "ok", root / "bad"
    ok.mkdir(parents=True), bad.mkdir()
    rgb = Image.fromarray(gradient(48, 64))
    rgb.save(ok / "rgb.jpg", quality=95)
    rgb.convert("L").save(ok / "gray.jpg", quality=95)
    rgb.convert("CMYK").save(ok / "cmyk.jpg", quality=95)
    rgb.save(ok / "png_named.jpg", format="PNG")
    rgb.convert("P").save(ok / "palette.png")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(ok / "one_pixel.jpg")
    Image.fromarray(gradient(3000, 4000)).save(ok / "large.jpg", quality=80)
    data = _noise_jpeg()
    (bad / "truncated.jpg").write_bytes(bytes(data[: len(data) // 2]))
    table = data.index(b"\xff\xc4") + 5  # the first Huffman table's code counts: made impossible
    data[table:table + 16] = b"\xff" * 16
    (bad / "corrupt.jpg").write_bytes(bytes(data))
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "garbage.jpg").write_bytes(bytes(range(256)) * 4)
    (bad / "text.jpg").write_text("not an image")
    (bad / "text.png").write_text("not an image")
    return root

"""Robust reading: a corpus of awkward and broken files, written by the test with PIL and raw bytes."""
import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from fastinv.errors import DataError
from fastinv.pipelines import LoaderConfig, build_two_view_loader, decode_image
from fastinv.pipelines.decode import pack_bytes, read_bytes, read_file, unpack_bytes

GOOD = {"rgb.jpg", "gray.jpg", "cmyk.jpg", "png_named.jpg", "one_pixel.jpg", "large.jpg", "palette.png"}
BAD = {"truncated.jpg", "empty.jpg", "garbage.jpg", "text.png"}


def _gradient(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), np.full_like(x, 90)], -1).astype(np.uint8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """An ImageFolder with one class of awkward-but-valid files and one of broken files."""
    root = tmp_path_factory.mktemp("corpus")
    ok, bad = root / "ok", root / "bad"
    ok.mkdir(), bad.mkdir()
    rgb = Image.fromarray(_gradient(48, 64))
    rgb.save(ok / "rgb.jpg", quality=95)
    rgb.convert("L").save(ok / "gray.jpg", quality=95)
    rgb.convert("CMYK").save(ok / "cmyk.jpg", quality=95)
    rgb.save(ok / "png_named.jpg", format="PNG")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(ok / "one_pixel.jpg")
    Image.fromarray(_gradient(3000, 4000)).save(ok / "large.jpg", quality=80)
    rgb.convert("P").save(ok / "palette.png")
    data = io.BytesIO()
    rgb.save(data, "JPEG", quality=95)
    (bad / "truncated.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "garbage.jpg").write_bytes(bytes(range(256)) * 4)
    (bad / "text.png").write_text("not an image")
    return root


@pytest.mark.parametrize("name", sorted(GOOD))
def test_decodable_files_decode_to_rgb(corpus, name):
    img = decode_image(corpus / "ok" / name)
    ref = np.asarray(Image.open(corpus / "ok" / name).convert("RGB"))
    assert img.dtype == torch.uint8 and img.shape == (3, *ref.shape[:2])
    # libjpeg-turbo (ours) and PIL's libjpeg may differ by rounding in the colour conversion
    assert np.abs(img.permute(1, 2, 0).numpy().astype(int) - ref.astype(int)).max() <= 2


def test_cmyk_and_gray_look_like_their_source(corpus):
    rgb = decode_image(corpus / "ok" / "rgb.jpg").float()
    assert (decode_image(corpus / "ok" / "cmyk.jpg").float() - rgb).abs().mean() < 3
    gray = decode_image(corpus / "ok" / "gray.jpg")
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


@pytest.mark.parametrize("name", sorted(BAD))
def test_undecodable_files_raise_naming_the_file(corpus, name):
    with pytest.raises(DataError, match=name):
        decode_image(corpus / "bad" / name)


@pytest.mark.parametrize("decode_in", ["workers", "main"])  # the CPU transport and the accelerator one, forced
@pytest.mark.parametrize("workers", [0, 2])
def test_loader_skips_bad_files_and_keeps_going(corpus, caplog, workers, decode_in):
    cfg = LoaderConfig(root=corpus, batch_size=4, workers=workers, image_size=16, drop_last=False, shuffle=False,
                       decode_in=decode_in)
    loader = build_two_view_loader(cfg)
    with caplog.at_level(logging.WARNING, logger="fastinv"):
        batches = list(loader)
    seen = torch.cat([b.indices for b in batches]).tolist()
    assert len(seen) == len(GOOD)  # each batch with bad files is shortened, never refilled
    assert {p.rsplit("/", 1)[-1] for p, _ in loader.skipped} == BAD
    assert all(b.view1.shape[1:] == (3, 16, 16) and torch.isfinite(b.view1).all() for b in batches)
    assert sum("skipping undecodable image" in r.message for r in caplog.records) == len(BAD)
    list(loader)  # a second epoch warns and counts each bad file once
    assert len(loader.skipped) == len(BAD)


def test_a_batch_of_files_travels_as_one_buffer(corpus):
    paths = sorted((corpus / "ok").iterdir())
    chunks = [read_file(p) for p in paths]
    buffer, offsets = pack_bytes(chunks)
    assert buffer.dtype == torch.uint8 and buffer.numel() == offsets[-1] == sum(map(len, chunks))
    views = unpack_bytes(buffer, offsets)
    assert [v.numpy().tobytes() for v in views] == chunks
    assert all(v.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr() for v in views)  # no copies
    with pytest.raises(DataError, match="empty.jpg: the file is empty"):
        read_file(corpus / "bad" / "empty.jpg")


def test_only_whole_jpegs_are_sent_to_nvjpeg(corpus):
    """nvJPEG may turn a truncated file into garbage; those and non-JPEGs go to the CPU decoder."""
    from fastinv.pipelines.decode import _is_whole_jpeg
    whole = {p.name for p in sorted((corpus / "ok").iterdir()) + sorted((corpus / "bad").iterdir())
             if p.stat().st_size and _is_whole_jpeg(read_bytes(p))}
    assert whole == {"rgb.jpg", "gray.jpg", "cmyk.jpg", "one_pixel.jpg", "large.jpg"}


def test_dali_backend_skips_unreadable_headers(corpus):
    pytest.importorskip("nvidia.dali")
    cfg = LoaderConfig(root=corpus, backend="dali", batch_size=4, workers=1, image_size=16, drop_last=False,
                       shuffle=False)
    loader = build_two_view_loader(cfg)
    seen = torch.cat([b.indices for b in loader]).numel()
    names = {p.rsplit("/", 1)[-1] for p, _ in loader.skipped}
    assert {"empty.jpg", "garbage.jpg", "text.png"} <= names
    assert seen + len(names) == len(GOOD) + len(BAD)

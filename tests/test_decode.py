"""Robust reading: the torch backend and the decoder on the awkward and broken files of `awkward_files`."""
import logging

import numpy as np
import pytest
import torch
from awkward_files import BAD, GOOD
from PIL import Image

from fastinv.errors import DataError
from fastinv.pipelines import LoaderConfig, build_two_view_loader, decode_image
from fastinv.pipelines.decode import pack_bytes, read_bytes, read_file, unpack_bytes

@pytest.mark.parametrize("name", sorted(GOOD))
def test_decodable_files_decode_to_rgb(awkward_files, name):
    img = decode_image(awkward_files / "ok" / name)
    ref = np.asarray(Image.open(awkward_files / "ok" / name).convert("RGB"))
    assert img.dtype == torch.uint8 and img.shape == (3, *ref.shape[:2])
    # libjpeg-turbo (ours) and PIL's libjpeg may differ by rounding in the colour conversion
    assert np.abs(img.permute(1, 2, 0).numpy().astype(int) - ref.astype(int)).max() <= 2


def test_cmyk_and_gray_look_like_their_source(awkward_files):
    rgb = decode_image(awkward_files / "ok" / "rgb.jpg").float()
    assert (decode_image(awkward_files / "ok" / "cmyk.jpg").float() - rgb).abs().mean() < 3
    gray = decode_image(awkward_files / "ok" / "gray.jpg")
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


@pytest.mark.parametrize("name", sorted(BAD))
def test_undecodable_files_raise_naming_the_file(awkward_files, name):
    with pytest.raises(DataError, match=name):
        decode_image(awkward_files / "bad" / name)


@pytest.mark.parametrize("decode_in", ["workers", "main"])  # the CPU transport and the accelerator one, forced
@pytest.mark.parametrize("workers", [0, 2])
def test_loader_skips_bad_files_and_keeps_going(awkward_files, caplog, workers, decode_in):
    cfg = LoaderConfig(root=awkward_files, batch_size=4, workers=workers, image_size=16, drop_last=False, shuffle=False,
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


def test_a_batch_of_files_travels_as_one_buffer(awkward_files):
    paths = sorted((awkward_files / "ok").iterdir())
    chunks = [read_file(p) for p in paths]
    buffer, offsets = pack_bytes(chunks)
    assert buffer.dtype == torch.uint8 and buffer.numel() == offsets[-1] == sum(map(len, chunks))
    views = unpack_bytes(buffer, offsets)
    assert [v.numpy().tobytes() for v in views] == chunks
    assert all(v.untyped_storage().data_ptr() == buffer.untyped_storage().data_ptr() for v in views)  # no copies
    with pytest.raises(DataError, match="empty.jpg: the file is empty"):
        read_file(awkward_files / "bad" / "empty.jpg")


def test_only_whole_jpegs_are_sent_to_nvjpeg(awkward_files):
    """nvJPEG may turn a truncated file into garbage; those and non-JPEGs go to the CPU decoder."""
    from fastinv.pipelines.decode import _is_whole_jpeg
    whole = {p.name for p in sorted((awkward_files / "ok").iterdir()) + sorted((awkward_files / "bad").iterdir())
             if p.stat().st_size and _is_whole_jpeg(read_bytes(p))}
    assert whole == {"rgb.jpg", "gray.jpg", "cmyk.jpg", "one_pixel.jpg", "large.jpg", "corrupt.jpg"}


def test_dali_backend_skips_unreadable_headers(awkward_files):
    pytest.importorskip("nvidia.dali")
    cfg = LoaderConfig(root=awkward_files, backend="dali", batch_size=4, workers=1, image_size=16, drop_last=False,
                       shuffle=False)
    loader = build_two_view_loader(cfg)
    seen = torch.cat([b.indices for b in loader]).numel()
    names = {p.rsplit("/", 1)[-1] for p, _ in loader.skipped}
    assert {"empty.jpg", "garbage.jpg", "text.png"} <= names
    assert seen + len(names) == len(GOOD) + len(BAD)

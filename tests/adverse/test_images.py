"""Adverse images given to ``predict``: each bad file is one stderr line naming it, the batch goes on, exit 1."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from .conftest import Case, face_chip, jpeg_claiming, run_case


def _png(w: int, h: int) -> bytes:
    """A PNG signature and a valid IHDR claiming w x h, with no image data."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))


def _file(name: str, data: bytes):
    def setup(tmp, env):
        (tmp / name).write_bytes(data)
        return ["predict", "--aligned", str(tmp / name)]

    return setup


def _chip_cut(name: str, keep: float):
    def setup(tmp, env):
        data = face_chip().read_bytes()
        (tmp / name).write_bytes(data[: int(len(data) * keep)])
        return ["predict", "--aligned", str(tmp / name)]

    return setup


def _tiny_png(tmp, env):
    from PIL import Image

    Image.new("RGB", (4, 4)).save(tmp / "tiny.png")
    return ["predict", "--aligned", str(tmp / "tiny.png")]


def _empty_folder_in_batch(tmp, env):
    (tmp / "empty").mkdir()
    return ["predict", "--aligned", str(tmp / "empty"), str(face_chip())]


def _bad_in_folder(tmp, env):
    (tmp / "imgs").mkdir()
    (tmp / "imgs" / "broken.jpg").write_bytes(b"not a jpeg")
    return ["predict", "--aligned", str(tmp / "imgs"), str(face_chip())]


def _batch_went_on(tmp, r):
    assert "age" in r.out and face_chip().name in r.out, r.out


CASES = [
    Case(
        "missing-file",
        lambda tmp, env: ["predict", "--aligned", str(tmp / "nope.jpg")],
        1,
        ("nope.jpg", "no such file"),
    ),
    Case("empty-file", _file("empty.jpg", b""), 1, ("empty.jpg", "empty file")),
    Case("text-as-jpeg", _file("text.jpg", b"hello, not an image\n" * 20), 1, ("text.jpg", "not an image")),
    Case("garbage-gif", _file("g.gif", b"GIF89a" + b"\x00" * 5), 1, ("g.gif",)),
    Case("truncated-jpeg", _chip_cut("cut.jpg", 0.4), 1, ("cut.jpg", "truncated")),
    Case("jpeg-header-only", _chip_cut("head.jpg", 0.02), 1, ("head.jpg",)),
    Case("jpeg-claims-65000px", _file("huge.jpg", jpeg_claiming(65000, 65000)), 1, ("huge.jpg", "truncated jpeg")),
    Case("jpeg-claims-20000x300", _file("wide.jpg", jpeg_claiming(20000, 3000)), 1, ("wide.jpg", "truncated jpeg")),
    Case("png-claims-100000px", _file("huge.png", _png(100000, 100000)), 1, ("huge.png",)),
    Case("png-no-data", _file("nodata.png", _png(64, 64)), 1, ("nodata.png",)),
    Case("image-4x4", _tiny_png, 1, ("tiny.png", "too small")),
    Case("bmp-garbage", _file("b.bmp", b"BM" + b"\xff" * 60), 1, ("b.bmp",)),
    Case("empty-folder-in-batch", _empty_folder_in_batch, 1, ("empty", "no images in folder"), extra=_batch_went_on),
    Case("bad-file-in-folder", _bad_in_folder, 1, ("broken.jpg",), extra=_batch_went_on),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_image(case, tmp_path, capsys, env):
    run_case(case, tmp_path, capsys, env)


def test_boxes_are_in_source_pixels_when_decoded_downscaled(tmp_path, cli, monkeypatch):
    """A JPEG over the decoder's pixel limit is decoded at 1/2^k: printed boxes must still be in source pixels."""
    from PIL import Image

    from c3ae_edge.data import imageio
    from c3ae_edge.data.crops import aligned_box

    Image.open(face_chip()).convert("RGB").resize((800, 800)).save(tmp_path / "big.jpg", quality=95)
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100 * 100)
    r = cli("predict", "--aligned", "--json", str(tmp_path / "big.jpg"))
    assert r.code == 0, r.err
    box = json.loads(r.out)["faces"][0]["box"]
    want = list(aligned_box(800, 800))  # predict prints boxes as (cx, cy, side), in source pixels
    assert all(abs(a - b) <= 16 for a, b in zip(box, want)), (box, want)  # within one decoded pixel (1/8 scale)

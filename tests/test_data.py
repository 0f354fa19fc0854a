"""Datasets, splits, crop spec, image decoding of awkward files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from c3ae_edge.data import (
    load_dataset,
    load_split,
    read_csv,
    read_fgnet,
    read_imdb_wiki,
    read_utkface,
    save_split,
    stratified_split,
)
from c3ae_edge.data.crops import CropSpec, aligned_box, landmark_box
from c3ae_edge.data.datasets import load_pts
from c3ae_edge.data.imageio import load_rgb
from c3ae_edge.errors import DataError


def test_utkface_reader_reads_whole_folder(utk_dir):
    s = read_utkface(utk_dir)
    assert len(s) == 21_707
    assert all(0 < x.age <= 116 for x in s[:500])
    assert s[0].kind == "aligned"


def test_utkface_reader_accepts_any_folder_with_that_layout(tmp_path, utk_dir):
    (tmp_path / "imgs").mkdir()
    src = read_utkface(utk_dir)[:3]
    lines = ["file,age,gender,race"]
    for i, smp in enumerate(src):
        (tmp_path / "imgs" / f"f{i}.jpg").write_bytes(open(smp.path, "rb").read())
        lines.append(f"imgs/f{i}.jpg,{int(smp.age)},0,0")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    got = load_dataset(f"utkface:{tmp_path}")
    assert [g.age for g in got] == [s.age for s in src]
    assert load_dataset(str(tmp_path))[0].path == got[0].path  # bare folder means utkface


def test_fgnet_reader_and_landmarks(fgnet_dir):
    s = read_fgnet(fgnet_dir)
    assert len(s) == 1002 and len({x.subject for x in s}) == 82
    pts = load_pts(s[0].points)
    assert pts.shape == (68, 2)
    cx, cy, side = landmark_box(pts)
    assert pts[:, 0].min() < cx < pts[:, 0].max() and side > np.ptp(pts[:, 0])


def test_generic_csv_with_and_without_box(tmp_path):
    (tmp_path / "a.csv").write_text("file,age,x0,y0,x1,y1\nx.jpg,30,10,20,110,140\ny.jpg,4,,,,\n")
    s = read_csv(tmp_path / "a.csv")
    assert s[0].kind == "rect" and s[0].rect == (10, 20, 110, 140)
    assert s[1].kind == "aligned" and s[1].age == 4


@pytest.mark.parametrize(
    "content,msg",
    [
        ("file\nx.jpg\n", "missing column"),
        ("file,age\nx.jpg,-3\n", "out of range"),
        ("file,age\nx.jpg,abc\n", "not a number"),
        ("file,age\n", "no rows"),
        ("file,age,x0,y0,x1,y1\nx.jpg,3,10,10,5,5\n", "empty face box"),
    ],
)
def test_bad_csv_is_one_clear_error(tmp_path, content, msg):
    (tmp_path / "b.csv").write_text(content)
    with pytest.raises(DataError, match=msg):
        read_csv(tmp_path / "b.csv")


def test_imdb_wiki_mat(tmp_path):
    from scipy.io import savemat

    n = 4
    rec = np.zeros(
        (1, 1),
        dtype=[
            (k, "O") for k in ("dob", "photo_taken", "full_path", "face_score", "second_face_score", "face_location")
        ],
    )
    # datenum of 1 Jan 1980 and 1990 (MATLAB: days since year 0)
    dob = np.array([[723181.0, 726834.0, 723181.0, 723181.0]])
    rec[0, 0]["dob"] = dob
    rec[0, 0]["photo_taken"] = np.array([[2010, 2015, 2010, 2010]])
    paths, locs = np.empty((1, n), dtype=object), np.empty((1, n), dtype=object)  # MATLAB 1xN cells
    for i in range(n):
        paths[0, i] = np.array([f"00/img{i}.jpg"])
        locs[0, i] = np.array([[10.0, 20.0, 110.0, 120.0]])
    rec[0, 0]["full_path"] = paths
    rec[0, 0]["face_score"] = np.array([[3.0, 2.5, -np.inf, 4.0]])
    rec[0, 0]["second_face_score"] = np.array([[np.nan, np.nan, np.nan, 1.5]])
    rec[0, 0]["face_location"] = locs
    savemat(tmp_path / "wiki.mat", {"wiki": rec})
    s = read_imdb_wiki(tmp_path / "wiki.mat")
    assert [x.age for x in s] == [30.0, 25.0]  # no face / second face dropped
    assert s[0].rect == (10.0, 20.0, 110.0, 120.0) and s[0].path.endswith("00/img0.jpg")
    assert load_dataset(f"wiki:{tmp_path / 'wiki.mat'}")[1].age == 25.0


def test_stratified_split_is_seeded_disjoint_and_recorded(tmp_path, utk_dir):
    s = read_utkface(utk_dir)
    a = stratified_split(s, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    b = stratified_split(s, {"train": 0.8, "val": 0.1, "test": 0.1}, seed=3)
    assert a == b
    assert not set(a["train"]) & set(a["test"]) and not set(a["val"]) & set(a["test"])
    assert sum(len(v) for v in a.values()) == len(s)
    ages = np.array([x.age for x in s])
    assert abs(ages[a["test"]].mean() - ages[a["train"]].mean()) < 1.0  # stratified
    save_split(tmp_path / "split.json", s, a, 3, "utkface")
    assert load_split(tmp_path / "split.json", s) == a


def test_crop_spec_boxes_and_padding():
    spec = CropSpec()
    img = np.zeros((200, 200, 3), np.uint8)
    img[:, 100:] = 255
    crops = spec.crop(img, aligned_box(200, 200))
    assert crops.shape == (3, 64, 64, 3) and crops.dtype == np.uint8
    # nested squares around one centre, widest first
    sides = [b[2] for b in spec.boxes((100, 100, 100))]
    assert sides == [120, 90, 60]
    x = spec.normalize(crops)
    assert x.shape == (3, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    # edge padding: a box hanging off the top-left repeats the border pixels
    img2 = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    c = CropSpec(scales=(1.0,), size=40).crop(img2, (0.0, 0.0, 40.0))[0]
    assert (c[:20, :20] == img2[0, 0]).all()
    assert CropSpec.from_dict(spec.to_dict()) == spec


def test_aligned_and_landmark_boxes_agree_on_faces(fgnet_dir, utk_dir):
    """The three box sources map onto one convention: a cascade box sits on a landmark box in FG-NET."""
    from c3ae_edge.data.detect import HaarDetector

    det = HaarDetector()
    s = read_fgnet(fgnet_dir)
    ious = []
    for smp in s[:60:6]:
        img = load_rgb(smp.path)
        d = det.detect(img)
        if not d:
            continue
        lb = landmark_box(load_pts(smp.points))
        ious.append(_iou(d[0].box, lb))
    assert len(ious) >= 6 and np.median(ious) > 0.6


def _iou(a, b):
    def r(x):
        return x[0] - x[2] / 2, x[1] - x[2] / 2, x[0] + x[2] / 2, x[1] + x[2] / 2

    (a0, a1, a2, a3), (b0, b1, b2, b3) = r(a), r(b)
    iw, ih = max(0, min(a2, b2) - max(a0, b0)), max(0, min(a3, b3) - max(a1, b1))
    inter = iw * ih
    return inter / (a[2] ** 2 + b[2] ** 2 - inter)


def _face(utk_dir) -> Image.Image:
    return Image.open(read_utkface(utk_dir)[100].path)


def test_awkward_images_decode_to_rgb(tmp_path, utk_dir, fgnet_dir):
    face = _face(utk_dir)
    face.convert("L").save(tmp_path / "gray.png")
    face.convert("CMYK").save(tmp_path / "cmyk.jpg")
    arr16 = np.asarray(face.convert("L"), np.uint16) * 257
    Image.fromarray(arr16).save(tmp_path / "g16.png")
    face.convert("RGBA").save(tmp_path / "rgba.png")
    face.convert("P").save(tmp_path / "pal.gif")
    for f in ("gray.png", "cmyk.jpg", "g16.png", "rgba.png", "pal.gif"):
        a = load_rgb(tmp_path / f)
        assert a.shape == (200, 200, 3) and a.dtype == np.uint8, f
    g16 = load_rgb(tmp_path / "g16.png")
    assert abs(int(g16.mean()) - int(np.asarray(face.convert("L")).mean())) <= 2
    gray_fgnet = [s for s in read_fgnet(fgnet_dir) if Image.open(s.path).mode == "L"][0]
    assert load_rgb(gray_fgnet.path).shape[2] == 3


@pytest.mark.parametrize(
    "name,payload,msg",
    [
        ("empty.jpg", b"", "empty file"),
        ("text.jpg", b"hello, not an image", "not an image"),
    ],
)
def test_bad_images_raise_one_clear_error(tmp_path, name, payload, msg):
    (tmp_path / name).write_bytes(payload)
    with pytest.raises(DataError, match=msg):
        load_rgb(tmp_path / name)


def test_truncated_jpeg(tmp_path, utk_dir):
    raw = open(read_utkface(utk_dir)[0].path, "rb").read()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load_rgb(tmp_path / "cut.jpg")


def test_huge_png_refused_before_decoding(tmp_path):
    Image.new("L", (20000, 20000)).save(tmp_path / "huge.png", optimize=False, compress_level=1)
    with pytest.raises(DataError, match="too large"):
        load_rgb(tmp_path / "huge.png")


@pytest.mark.slow
def test_huge_jpeg_decodes_downscaled(tmp_path):
    Image.new("RGB", (20000, 20000), (90, 120, 150)).save(tmp_path / "huge.jpg", quality=50)
    a = load_rgb(tmp_path / "huge.jpg")
    assert max(a.shape[:2]) <= 5001 and tuple(a[10, 10]) == pytest.approx((90, 120, 150), abs=3)

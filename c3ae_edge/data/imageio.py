"""Decode any user image into HxWx3 uint8 RGB, or raise one clear DataError."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from c3ae_edge.errors import DataError

MAX_PIXELS = 80_000_000  # beyond this a JPEG is decoded downscaled (draft); other formats are refused
SUPPORTED = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image as RGB uint8, whatever its mode: grayscale, 16-bit, CMYK, palette, alpha, EXIF-rotated."""
    return load_scaled(path)[0]


def load_scaled(path: str | Path, fast_jpeg: bool = False) -> tuple[np.ndarray, float]:
    """``load_rgb`` and the decoded / source size ratio (below 1 when a huge JPEG was decoded downscaled):
    divide box coordinates found on the array by it to get source pixels. ``fast_jpeg``: a whole JPEG (its end
    marker present) is decoded by OpenCV (c3ae_edge/data/jpeg_decode.py: Pillow's pixels, about 2x faster)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    if p.stat().st_size == 0:
        raise DataError(f"{p}: empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = None  # we check the size ourselves, before decoding
    try:
        with Image.open(p) as im:
            w, h = im.size
            if im.format == "JPEG" and p.stat().st_size * 8 < ((w + 7) // 8) * ((h + 7) // 8):
                # every 8x8 luma block costs at least one bit of entropy-coded data: this file ends early
                raise DataError(f"{p}: truncated JPEG ({p.stat().st_size:,} bytes cannot hold {w}x{h} pixels)")
            if w * h > MAX_PIXELS:
                if im.format != "JPEG":
                    raise DataError(f"{p}: image too large ({w}x{h} > {MAX_PIXELS:,} pixels)")
                # draft decodes at the smallest 1/2^k scale >= the request: ask for half the target, stay under it
                scale = (MAX_PIXELS / (w * h)) ** 0.5 / 2
                im.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
                if im.size[0] * im.size[1] > MAX_PIXELS:
                    raise DataError(f"{p}: image too large ({w}x{h} > {MAX_PIXELS:,} pixels)")
            if fast_jpeg and im.format == "JPEG" and im.size == (w, h):
                fast = _whole_jpeg(p)
                if fast is not None:
                    return fast, 1.0
            im.load()
            scale = im.size[0] / w
            im = ImageOps.exif_transpose(im)
            return to_rgb(im, p), scale
    except DataError:
        raise
    except UnidentifiedImageError:
        raise DataError(
            f"{p}: not an image, or a format we cannot read (supported: {', '.join(sorted(SUPPORTED))})"
        ) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{p}: corrupt or truncated image ({e})") from None


def _whole_jpeg(p: Path) -> np.ndarray | None:
    """OpenCV's decode of a JPEG that ends with its end-of-image marker (a cut file goes to Pillow, which says so)."""
    from c3ae_edge.data.jpeg_decode import decode_jpeg_rgb

    data = p.read_bytes()
    return decode_jpeg_rgb(data) if data.rstrip(b"\x00").endswith(b"\xff\xd9") else None


def to_rgb(im, p: Path) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        from PIL import Image

        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im.convert("RGBA"))
    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 8:
        raise DataError(f"{p}: image too small or malformed (shape {arr.shape})")
    return np.ascontiguousarray(arr)


def decode_bytes(data: bytes) -> np.ndarray:
    """Encoded image bytes (a camera frame, a photo read earlier) -> RGB uint8: JPEGs through OpenCV
    (c3ae_edge/data/jpeg_decode.py: Pillow's pixels, faster), anything else through Pillow as ``load_rgb`` does."""
    import io

    from PIL import Image, ImageOps

    from c3ae_edge.data.jpeg_decode import decode_jpeg_rgb

    img = decode_jpeg_rgb(data)
    if img is not None:
        return img
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return to_rgb(ImageOps.exif_transpose(im), Path("<image bytes>"))

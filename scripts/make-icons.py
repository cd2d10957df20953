#!/usr/bin/env python3
"""Generate the icon files in assets/ from one source: traywire's own icon
drawing (`traywire.desktop.icon.draw_icon`): the app icon (the "healthy" tile)
and the tray's image for every health state and preference badge.

    .venv/bin/python scripts/make-icons.py           # (re)write assets/
    .venv/bin/python scripts/make-icons.py --check   # exit 1 if assets/ is stale

Every size is drawn at that size (the drawing supersamples and scales down
itself), never scaled from a bigger file, so small icons stay crisp.

Outputs (paths relative to assets/):

* ``png/traywire-N.png``: Linux (hicolor theme: 16-512) and a 1024 master.
* ``traywire.ico``: Windows (exe, installer, Start menu), 16-256.
* ``traywire.icns``: macOS (.app bundle, .dmg), 32-1024 (the sizes Pillow's
  ICNS writer stores: 16@2x, 32@2x, 128, 128@2x, 256, 256@2x, 512, 512@2x).
* ``tray/STATE[-BADGE].png``: what the tray icon shows, at the size the tray
  draws it (``TRAY_SIZE``), for each health state (healthy, degraded, failing;
  not_running without a badge) and each preference badge (none, ``local`` for
  local only, ``cloud`` for cloud only). The Xvfb tray test compares its
  screenshots against them.

``--check`` compares pixels (not bytes: PNG compression differs between Pillow
and zlib versions), allowing a difference of ``TOLERANCE`` per channel.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from PIL import IcnsImagePlugin, IcoImagePlugin, Image, ImageChops

from traywire.desktop.icon import BADGES, ICON_STATES, Badge, IconState, draw_icon, icon_name

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ICON_STATE: IconState = "healthy"
PNG_SIZES: tuple[int, ...] = (16, 22, 24, 32, 48, 64, 128, 256, 512, 1024)
ICO_SIZES: tuple[int, ...] = (16, 20, 24, 32, 40, 48, 64, 128, 256)
ICNS_SIZES: tuple[int, ...] = (32, 64, 128, 256, 512, 1024)
# Hicolor icon theme sizes installed by the .deb (a subset of PNG_SIZES).
LINUX_SIZES: tuple[int, ...] = (16, 22, 24, 32, 48, 64, 128, 256, 512)
TOLERANCE = 3
# The tray draws its icon at this size (traywire.desktop.trayicon.Tray's icon_size).
TRAY_SIZE = 64
TRAY_STATES: tuple[tuple[IconState, Badge | None], ...] = tuple(
    (state, badge)
    for state in ICON_STATES
    for badge in BADGES
    if state != "not_running" or badge is None
)


def draw(size: int) -> Image.Image:
    return draw_icon(ICON_STATE, size)


def png_name(size: int) -> str:
    return f"png/traywire-{size}.png"


def tray_name(state: IconState, badge: Badge | None) -> str:
    return f"tray/{icon_name(state, badge)}.png"


_TRAY = {tray_name(state, badge): (state, badge) for state, badge in TRAY_STATES}


def drawing(name: str, size: int) -> Image.Image:
    """What the file ``name`` (relative to assets/) holds at ``size``."""
    if name in _TRAY:
        state, badge = _TRAY[name]
        return draw_icon(state, size, badge)
    return draw(size)


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _ico_bytes() -> bytes:
    images = [draw(s) for s in ICO_SIZES]
    buf = io.BytesIO()
    largest = images[-1]
    largest.save(
        buf,
        "ICO",
        sizes=[(s, s) for s in ICO_SIZES],
        append_images=images[:-1],
        bitmap_format="png",
    )
    return buf.getvalue()


def _icns_bytes() -> bytes:
    images = [draw(s) for s in ICNS_SIZES]
    buf = io.BytesIO()
    images[-1].save(buf, "ICNS", append_images=images[:-1])
    return buf.getvalue()


def outputs() -> dict[str, bytes]:
    """Every generated file: path relative to assets/ -> contents."""
    files = {png_name(s): _png_bytes(draw(s)) for s in PNG_SIZES}
    files["traywire.ico"] = _ico_bytes()
    files["traywire.icns"] = _icns_bytes()
    for state, badge in TRAY_STATES:
        files[tray_name(state, badge)] = _png_bytes(draw_icon(state, TRAY_SIZE, badge))
    return files


# --------------------------------------------------------------------------- reading back


def ico_images(data: bytes) -> dict[int, Image.Image]:
    """Each size stored in an .ico, decoded."""
    ico = IcoImagePlugin.IcoFile(io.BytesIO(data))
    return {w: ico.getimage((w, h)).convert("RGBA") for w, h in ico.sizes()}


def icns_images(data: bytes) -> dict[int, Image.Image]:
    """Each pixel size stored in an .icns, decoded (retina entries by their pixel size)."""
    icns = IcnsImagePlugin.IcnsFile(io.BytesIO(data))
    found: dict[int, Image.Image] = {}
    for w, _h, scale in icns.itersizes():
        image = icns.getimage((w, w, scale)).convert("RGBA")
        found[image.width] = image
    return found


def png_images(data: bytes) -> dict[int, Image.Image]:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        image = im.convert("RGBA")
    return {image.width: image}


def max_difference(a: Image.Image, b: Image.Image) -> int:
    """The largest per-channel difference between two same-size RGBA images."""
    if a.size != b.size:
        return 256
    extrema = ImageChops.difference(a.convert("RGBA"), b.convert("RGBA")).getextrema()
    return max(int(hi) for _lo, hi in extrema)  # type: ignore[misc]


_READERS: dict[str, Callable[[bytes], dict[int, Image.Image]]] = {
    ".png": png_images,
    ".ico": ico_images,
    ".icns": icns_images,
}


def expected_sizes(name: str) -> tuple[int, ...]:
    if name == "traywire.ico":
        return ICO_SIZES
    if name == "traywire.icns":
        return ICNS_SIZES
    if name in _TRAY:
        return (TRAY_SIZE,)
    return (int(name.rsplit("-", 1)[1].split(".")[0]),)


def check(assets: Path = ASSETS) -> list[str]:
    """Problems with the files in ``assets`` (missing, wrong sizes, stale pixels)."""
    problems: list[str] = []
    for name in outputs():
        path = assets / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        try:
            found = _READERS[path.suffix](path.read_bytes())
        except Exception as exc:  # a broken file is a finding, not a crash
            problems.append(f"{path}: cannot be read ({type(exc).__name__}: {exc})")
            continue
        want = expected_sizes(name)
        if sorted(found) != sorted(want):
            problems.append(f"{path}: sizes {sorted(found)}, expected {sorted(want)}")
            continue
        for size in want:
            diff = max_difference(found[size], drawing(name, size))
            if diff > TOLERANCE:
                problems.append(
                    f"{path}: the {size} px image differs from traywire.desktop.icon's drawing "
                    f"(by up to {diff}/255 per channel)"
                )
    return problems


def write(assets: Path = ASSETS) -> list[Path]:
    written = []
    for name, data in outputs().items():
        path = assets / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--check", action="store_true", help="only check that assets/ is up to date")
    p.add_argument("--assets", type=Path, default=ASSETS, help="the assets directory")
    args = p.parse_args(argv)
    if args.check:
        problems = check(args.assets)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: .venv/bin/python scripts/make-icons.py", file=sys.stderr)
            return 1
        print(f"{args.assets}: icons up to date")
        return 0
    for path in write(args.assets):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Tests for traywire.desktop.icon: sizes, distinctness, contrast on light and dark panels."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

import traywire.desktop.icon
from traywire.desktop.icon import BADGES, ICON_STATES, Badge, IconState, draw_icon

SIZES = (16, 22, 24, 32, 48, 64)
WHITE = (255, 255, 255)
NEAR_BLACK = (24, 24, 24)
# Typical panel colours besides the extremes (GNOME/KDE/Windows/macOS light and dark).
PANELS = (WHITE, (240, 240, 240), (222, 222, 222), NEAR_BLACK, (48, 48, 48), (0, 0, 0))
ARTIFACTS = Path(__file__).parent / "artifacts"


def _linear(channel: int) -> float:
    c = channel / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def luminance(rgb: tuple[int, ...]) -> float:
    """WCAG relative luminance of an sRGB colour."""
    r, g, b = rgb[:3]
    return 0.2126 * _linear(r) + 0.7152 * _linear(g) + 0.0722 * _linear(b)


def contrast_ratio(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    la, lb = luminance(a), luminance(b)
    return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)


def on_background(icon: Image.Image, bg: tuple[int, int, int]) -> Image.Image:
    canvas = Image.new("RGBA", icon.size, (*bg, 255))
    canvas.alpha_composite(icon)
    return canvas


def opaque_pixels(icon: Image.Image, bg: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """The icon's (mostly) opaque pixels, as they appear over ``bg``."""
    shown = on_background(icon, bg).get_flattened_data()
    alpha = icon.getchannel("A").get_flattened_data()
    return [p for p, a in zip(shown, alpha, strict=True) if a >= 128]


def visible_fraction(icon: Image.Image, bg: tuple[int, int, int]) -> float:
    """Share of the icon's opaque pixels that stand out from ``bg`` (contrast >= 3:1)."""
    pixels = opaque_pixels(icon, bg)
    return sum(contrast_ratio(p, bg) >= 3.0 for p in pixels) / len(pixels)


def structure(icon: Image.Image) -> list[int]:
    """A colour-blind view of the icon: transparent / darker / brighter than its median.

    Two states that differ only in hue have the same structure; different glyphs don't.
    """
    grey = on_background(icon, (128, 128, 128)).convert("L").get_flattened_data()
    alpha = icon.getchannel("A").get_flattened_data()
    levels = sorted(g for g, a in zip(grey, alpha, strict=True) if a >= 128)
    median = levels[len(levels) // 2]
    return [2 if a < 128 else int(g > median) for g, a in zip(grey, alpha, strict=True)]


# --------------------------------------------------------------------------- basics


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("state", ICON_STATES)
def test_renders_every_state_at_every_size(state: IconState, size: int) -> None:
    icon = draw_icon(state, size)
    assert icon.mode == "RGBA"
    assert icon.size == (size, size)
    alpha = icon.getchannel("A")
    # Transparent corners (a rounded tile; resampling may leave a trace), a solid body.
    assert alpha.getpixel((0, 0)) < 16
    assert alpha.getpixel((size - 1, size - 1)) < 16
    assert alpha.getpixel((size // 2, round(size * 0.09))) >= 128  # the top outline
    opaque = sum(a >= 128 for a in alpha.get_flattened_data())
    assert opaque >= 0.4 * size * size


def test_default_size_is_64() -> None:
    assert draw_icon("healthy").size == (64, 64)


def test_states_are_the_documented_five() -> None:
    assert ICON_STATES == ("healthy", "degraded", "failing", "not_running")
    assert BADGES == (None, "local", "cloud")


def test_drawing_is_deterministic() -> None:
    for state in ICON_STATES:
        assert draw_icon(state, 22).tobytes() == draw_icon(state, 22).tobytes()


@pytest.mark.parametrize("bad", ["ok", "", "HEALTHY"])
def test_unknown_state(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown icon state"):
        draw_icon(bad, 22)  # type: ignore[arg-type]


def test_unknown_badge() -> None:
    with pytest.raises(ValueError, match="unknown badge"):
        draw_icon("healthy", 22, "paused")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, 4, -16, 22.5])
def test_bad_size(bad: int) -> None:
    with pytest.raises(ValueError, match="size"):
        draw_icon("healthy", bad)


def test_not_running_is_see_through() -> None:
    """The hollow tile: the middle lets the panel show through (shape, not just colour)."""
    icon = draw_icon("not_running", 32)
    alpha = icon.getchannel("A")
    assert alpha.getpixel((16, 7)) == 0  # inside the ring, above the glyph
    for state in ("healthy", "degraded", "failing"):
        assert draw_icon(state, 32).getchannel("A").getpixel((16, 7)) == 255


# --------------------------------------------------------------------------- distinctness


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(ICON_STATES, 2)))
def test_states_are_pairwise_distinct_at_22px(a: IconState, b: IconState) -> None:
    ia, ib = draw_icon(a, 22), draw_icon(b, 22)
    mean_diff = sum(ImageStat.Stat(ImageChops.difference(ia, ib)).mean) / 4
    assert mean_diff > 15, f"{a} and {b} differ by only {mean_diff:.1f}/255 per channel"


@pytest.mark.parametrize("size", [16, 22])
@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(ICON_STATES, 2)))
def test_states_differ_in_shape_not_only_colour(a: IconState, b: IconState, size: int) -> None:
    sa, sb = structure(draw_icon(a, size)), structure(draw_icon(b, size))
    differing = sum(x != y for x, y in zip(sa, sb, strict=True)) / len(sa)
    assert differing > 0.06, f"{a} and {b} differ in only {differing:.0%} of pixels without hue"


LIVE = [s for s in ICON_STATES if s != "not_running"]
COMBOS = [(s, b) for s in LIVE for b in BADGES]


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(COMBOS, 2)))
def test_every_health_and_badge_pair_differs_in_shape_at_22px(
    a: tuple[IconState, Badge | None], b: tuple[IconState, Badge | None]
) -> None:
    """Health x preference: every combination reads differently without hue (the
    house and the cloud: in the badge's corner, in grey)."""
    ia, ib = draw_icon(a[0], 22, a[1]), draw_icon(b[0], 22, b[1])
    if a[0] == b[0] and a[1] and b[1]:
        corner = (11, 11, 22, 22)
        grey = ImageChops.difference(ia.crop(corner).convert("L"), ib.crop(corner).convert("L"))
        mean = ImageStat.Stat(grey).mean[0]
        assert mean > 8, f"{a} and {b} differ by only {mean:.1f}/255 in the badge"
        return
    sa, sb = structure(ia), structure(ib)
    differing = sum(x != y for x, y in zip(sa, sb, strict=True)) / len(sa)
    assert differing > 0.02, f"{a} and {b} differ in only {differing:.1%} of pixels"


@pytest.mark.parametrize("badge", ["local", "cloud"])
@pytest.mark.parametrize("state", LIVE)
def test_a_badge_keeps_the_health_colour(state: IconState, badge: Badge) -> None:
    """The badge takes a corner: most of the tile still shows the health's colour."""
    plain, badged = draw_icon(state, 32), draw_icon(state, 32, badge)
    fill = traywire.desktop.icon._FILL[state]
    assert fill is not None

    def filled(icon: Image.Image) -> int:
        pixels = icon.get_flattened_data()
        return sum(all(abs(a - b) <= 12 for a, b in zip(p, fill, strict=True)) for p in pixels)

    assert filled(badged) >= 0.7 * filled(plain) > 100
    # and the badge's corner is white and dark (a glyph on a disc), not the fill
    corner = badged.crop((19, 19, 31, 31))
    assert sum(p[:3] == (255, 255, 255) for p in corner.get_flattened_data()) > 10


# --------------------------------------------------------------------------- contrast


@pytest.mark.parametrize("size", [16, 22, 32, 64])
@pytest.mark.parametrize("badge", BADGES)
@pytest.mark.parametrize("state", ICON_STATES)
def test_contrast_on_light_and_dark_panels(
    state: IconState, badge: Badge | None, size: int
) -> None:
    icon = draw_icon(state, size, badge)
    for bg in PANELS:
        fraction = visible_fraction(icon, bg)
        assert fraction >= 0.4, (
            f"{state} at {size}px: only {fraction:.0%} of its pixels reach 3:1 against {bg}"
        )


@pytest.mark.parametrize("state", ICON_STATES)
def test_outline_is_dark_and_body_is_light_enough(state: IconState) -> None:
    """Both a dark edge (for light panels) and a light part (for dark panels) exist."""
    pixels = opaque_pixels(draw_icon(state, 22), (128, 128, 128))
    assert min(luminance(p) for p in pixels) < 0.02
    assert max(luminance(p) for p in pixels) > 0.3


# --------------------------------------------------------------------------- artifact


def test_icon_sheet_artifact() -> None:
    """Write tests/artifacts/icons.png: every state and badge, 16-64 px, on light and
    dark panels."""
    sizes = (16, 22, 32, 64)
    pad = 6
    combos = [(s, b) for s in ICON_STATES for b in BADGES if s != "not_running" or b is None]
    block = sum(s + pad for s in sizes)
    row_h = max(sizes) + 2 * pad
    sheet = Image.new("RGB", (block * len(combos) + pad, row_h * len(PANELS)))
    for row, bg in enumerate(PANELS):
        strip = Image.new("RGBA", (sheet.width, row_h), (*bg, 255))
        x = pad
        for state, badge in combos:
            for size in sizes:
                strip.alpha_composite(draw_icon(state, size, badge), (x, (row_h - size) // 2))
                x += size + pad
        sheet.paste(strip.convert("RGB"), (0, row * row_h))
    # Magnified with nearest-neighbour so single pixels stay visible.
    zoomed = sheet.resize((sheet.width * 2, sheet.height * 2), Image.Resampling.NEAREST)
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / "icons.png"
    zoomed.save(out)
    assert Image.open(out).size == zoomed.size


def test_import_touches_no_display() -> None:
    code = (
        "import sys, traywire.desktop.icon; "
        "bad = [m for m in ('tkinter', 'Xlib', 'pystray', 'gi') if m in sys.modules]; "
        "assert not bad, bad"
    )
    src = str(Path(traywire.desktop.icon.__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": src},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr

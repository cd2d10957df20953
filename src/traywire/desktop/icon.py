"""The tray icon, drawn with Pillow at run time.

One rounded tile per health state. The state shows in the tile's colour *and* in its
glyph, so it reads without colour vision too:

============  ========  =================================================
state         colour    glyph
============  ========  =================================================
healthy       green     the traywire motif: one wire fanning out to three
degraded      amber     "!" (some backends down, every route still served)
failing       red       "x" (a route has no healthy backend)
not_running   none      hollow tile with the motif in grey
============  ========  =================================================

The routing preference, when it rules out a location, is a small round badge in the
bottom-right corner, on top of the health tile (which it never replaces; the health
glyph moves up and left to make room): a house for *local only*, a cloud for *cloud
only*. No badge for the preferences that allow both.

Every tile has a near-black outline (it stands out on light panels) around a
mid-luminance fill or a light inner ring (which stand out on dark panels).  Shapes are
drawn at 4x and scaled down, so edges stay smooth at 16-32 px.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from PIL import Image, ImageDraw

__all__ = ["BADGES", "ICON_STATES", "Badge", "IconState", "draw_icon", "icon_name"]

IconState = Literal["healthy", "degraded", "failing", "not_running"]
ICON_STATES: tuple[IconState, ...] = get_args(IconState)
# The preference's badge: local only (a house), cloud only (a cloud); None: no badge.
Badge = Literal["local", "cloud"]
BADGES: tuple[Badge | None, ...] = (None, *get_args(Badge))

RGBA = tuple[int, int, int, int]

_OUTLINE: RGBA = (20, 20, 20, 255)
_WHITE: RGBA = (255, 255, 255, 255)
_DARK_GLYPH: RGBA = (24, 24, 24, 255)
_RING: RGBA = (235, 235, 235, 255)
_GREY: RGBA = (140, 140, 140, 255)

# Green and red sit at a relative luminance of about 0.2, which keeps 3:1
# contrast against light (up to #dedede) and dark (from #303030 down) panels alike,
# and 4:1 for the white glyph on top. Amber is brighter and carries a dark glyph.
_FILL: dict[IconState, RGBA | None] = {
    "healthy": (28, 142, 66, 255),
    "degraded": (240, 168, 24, 255),
    "failing": (232, 56, 56, 255),
    "not_running": None,
}

_SUPERSAMPLE = 4

# Tile geometry, in units of the icon's side.
_INSET = 0.05
_RADIUS = 0.22
_OUTLINE_W = 0.085
_RING_W = 0.075


# The badge: a disc in the bottom-right corner; with it the health glyph is drawn
# at _GLYPH_SCALE, its centre moved to _GLYPH_CENTRE.
_BADGE_CENTRE = 0.76
_BADGE_R = 0.235
_BADGE_RING = 0.05
_GLYPH_SCALE = 0.78
_GLYPH_CENTRE = 0.4


class _Pen:
    """Draws in unit coordinates (0..1 across the icon) on a supersampled canvas;
    ``scale`` and ``centre`` place a glyph's unit square (centre 0.5, 0.5)."""

    def __init__(self, canvas: Image.Image, scale: float = 1.0, centre: float = 0.5) -> None:
        self.side = canvas.width
        self.canvas = canvas
        self.draw = ImageDraw.Draw(canvas)
        self.scale = scale
        self.offset = centre - 0.5 * scale

    def moved(self, scale: float, centre: float) -> _Pen:
        return _Pen(self.canvas, scale, centre)

    def px(self, v: float) -> float:
        return v * self.scale * self.side

    def at(self, v: float) -> float:
        return (self.offset + v * self.scale) * self.side

    def box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
        return (self.at(x0), self.at(y0), self.at(x1), self.at(y1))

    def dot(self, x: float, y: float, r: float, fill: RGBA) -> None:
        self.draw.ellipse(self.box(x - r, y - r, x + r, y + r), fill=fill)

    def stroke(self, points: list[tuple[float, float]], width: float, fill: RGBA) -> None:
        """A polyline with round caps and joins."""
        xy = [(self.at(x), self.at(y)) for x, y in points]
        self.draw.line(xy, fill=fill, width=max(1, round(self.px(width))), joint="curve")
        for x, y in points:
            self.dot(x, y, width / 2, fill)

    def polygon(self, points: list[tuple[float, float]], fill: RGBA) -> None:
        self.draw.polygon([(self.at(x), self.at(y)) for x, y in points], fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: RGBA) -> None:
        self.draw.rectangle(self.box(x0, y0, x1, y1), fill=fill)

    def tile(self, fill: RGBA | None) -> None:
        outer = self.box(_INSET, _INSET, 1 - _INSET, 1 - _INSET)
        self.draw.rounded_rectangle(outer, radius=self.px(_RADIUS), fill=_OUTLINE)
        inset = _INSET + _OUTLINE_W
        inner = self.box(inset, inset, 1 - inset, 1 - inset)
        inner_radius = self.px(_RADIUS - _OUTLINE_W)
        if fill is not None:
            self.draw.rounded_rectangle(inner, radius=inner_radius, fill=fill)
            return
        # Hollow: a light ring inside the dark outline, then a see-through middle.
        self.draw.rounded_rectangle(inner, radius=inner_radius, fill=_RING)
        hole = inset + _RING_W
        self.draw.rounded_rectangle(
            self.box(hole, hole, 1 - hole, 1 - hole),
            radius=self.px(_RADIUS - _OUTLINE_W - _RING_W),
            fill=(0, 0, 0, 0),
        )


def _fan_out(pen: _Pen, colour: RGBA) -> None:
    """The traywire motif: one wire coming in, fanning out to three backends."""
    start, split, end = 0.26, 0.47, 0.73
    width = 0.1
    pen.stroke([(start, 0.5), (end, 0.5)], width, colour)
    for y in (0.3, 0.7):
        pen.stroke([(split, 0.5), (end, y)], width, colour)
    pen.dot(start, 0.5, 0.1, colour)


def _healthy(pen: _Pen) -> None:
    _fan_out(pen, _WHITE)


def _degraded(pen: _Pen) -> None:
    pen.stroke([(0.5, 0.25), (0.5, 0.55)], 0.15, _DARK_GLYPH)
    pen.dot(0.5, 0.75, 0.085, _DARK_GLYPH)


def _failing(pen: _Pen) -> None:
    a, b = 0.32, 0.68
    pen.stroke([(a, a), (b, b)], 0.15, _WHITE)
    pen.stroke([(a, b), (b, a)], 0.15, _WHITE)


def _not_running(pen: _Pen) -> None:
    _fan_out(pen, _GREY)


_GLYPHS: dict[IconState, Callable[[_Pen], None]] = {
    "healthy": _healthy,
    "degraded": _degraded,
    "failing": _failing,
    "not_running": _not_running,
}


def _house(pen: _Pen) -> None:
    """Local only: a house (roof and body, a door cut out)."""
    pen.polygon([(0.5, 0.18), (0.86, 0.52), (0.14, 0.52)], _DARK_GLYPH)
    pen.rect(0.26, 0.48, 0.74, 0.82, _DARK_GLYPH)
    pen.rect(0.43, 0.6, 0.57, 0.82, _WHITE)


def _cloud(pen: _Pen) -> None:
    """Cloud only: a cloud (three puffs on a flat base)."""
    pen.dot(0.34, 0.58, 0.17, _DARK_GLYPH)
    pen.dot(0.55, 0.45, 0.22, _DARK_GLYPH)
    pen.dot(0.72, 0.6, 0.15, _DARK_GLYPH)
    pen.rect(0.3, 0.58, 0.74, 0.75, _DARK_GLYPH)
    pen.dot(0.3, 0.66, 0.09, _DARK_GLYPH)
    pen.dot(0.74, 0.66, 0.09, _DARK_GLYPH)


_BADGE_GLYPHS: dict[Badge, Callable[[_Pen], None]] = {"local": _house, "cloud": _cloud}


def _badge(pen: _Pen, badge: Badge) -> None:
    c, r = _BADGE_CENTRE, _BADGE_R
    pen.dot(c, c, r, _OUTLINE)
    pen.dot(c, c, r - _BADGE_RING, _WHITE)
    inner = 2 * (r - _BADGE_RING) * 0.92
    _BADGE_GLYPHS[badge](pen.moved(inner, c))


def icon_name(state: IconState, badge: Badge | None = None) -> str:
    """The file name stem of a state's tray image: ``healthy``, ``degraded-local``..."""
    return state if badge is None else f"{state}-{badge}"


def draw_icon(state: IconState, size: int = 64, badge: Badge | None = None) -> Image.Image:
    """Draw the tray icon for ``state`` (and the preference's ``badge``, if any) as
    a ``size`` x ``size`` RGBA image."""
    if state not in _GLYPHS:
        raise ValueError(f"unknown icon state {state!r}; expected one of {ICON_STATES}")
    if badge is not None and badge not in _BADGE_GLYPHS:
        raise ValueError(f"unknown badge {badge!r}; expected one of {BADGES}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"icon size must be an integer of at least 8 px, not {size!r}")
    canvas = Image.new("RGBA", (size * _SUPERSAMPLE, size * _SUPERSAMPLE), (0, 0, 0, 0))
    pen = _Pen(canvas)
    pen.tile(_FILL[state])
    if badge is None:
        _GLYPHS[state](pen)
    else:
        _GLYPHS[state](pen.moved(_GLYPH_SCALE, _GLYPH_CENTRE))
        _badge(pen, badge)
    return canvas.resize((size, size), Image.Resampling.LANCZOS)

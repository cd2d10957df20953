"""The tray icon under a real (virtual) desktop shows health and preference at
once: for every health (healthy, degraded, failing) x preference (auto, local
only, cloud only) the icon on screen is the generated asset for that pair
(``assets/tray/``, made by ``scripts/make-icons.py``) and no other.

Screenshots of the tray for each pair are written to
``tests/artifacts/tray_states/`` (committed), with a contact sheet
``tests/artifacts/tray_states.png``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat
from xsession import need_gi, need_tools, xsession

from traywire.desktop.icon import icon_name

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets" / "tray"
ARTIFACTS = Path(__file__).parent / "artifacts"
DRIVER = str(Path(__file__).parent / "tray_states_driver.py")
HEALTHS = ("healthy", "degraded", "failing")
PREFERENCES = {"auto": None, "local_only": "local", "cloud_only": "cloud"}
# trayer's strip: top right of the 640x240 screen (tests/xsession.py)
TRAY_BOX = (480, 0, 640, 40)


def icon_box(strip: Image.Image) -> tuple[int, int, int, int] | None:
    """Where the icon is in the tray's strip (what differs from its background)."""
    bg = strip.getpixel((2, 2))
    diff = ImageChops.difference(strip, Image.new("RGB", strip.size, bg)).convert("L")
    return diff.point(lambda v: 255 if v > 30 else 0).getbbox()


def _drawn(asset: Path, side: int, bg: tuple[int, int, int]) -> Image.Image:
    with Image.open(asset) as im:
        icon = im.convert("RGBA").resize((side, side), Image.Resampling.BILINEAR)
    canvas = Image.new("RGBA", (side, side), (*bg, 255))
    canvas.alpha_composite(icon)
    return canvas.convert("RGB")


def _diff(a: Image.Image, b: Image.Image) -> float:
    return float(sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3)


def place(strip: Image.Image, asset: Path) -> tuple[int, int, int]:
    """Where and at what size the tray shows the icon: the (x, y, side) at which
    ``asset`` matches the screen best (the toolkit scales it to the tray's size)."""
    box = icon_box(strip)
    assert box is not None
    bg = strip.getpixel((2, 2))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    guess = round((box[2] - box[0]) / 0.9)  # the tile leaves 5% of the icon each side
    best = (1e9, 0, 0, 0)
    for side in range(guess - 2, guess + 3):
        drawn = _drawn(asset, side, bg)
        for dx in range(-2, 3):
            for dy in range(-2, 3):
                x, y = round(cx - side / 2) + dx, round(cy - side / 2) + dy
                d = _diff(strip.crop((x, y, x + side, y + side)), drawn)
                best = min(best, (d, x, y, side))
    return best[1], best[2], best[3]


def scores(strip: Image.Image, at: tuple[int, int, int]) -> dict[str, tuple[float, float]]:
    """Each asset against the screen at ``at``: the whole icon, and the badge's corner."""
    x, y, side = at
    bg = strip.getpixel((2, 2))
    shown = strip.crop((x, y, x + side, y + side))
    corner = (side // 2, side // 2, side, side)
    out = {}
    for asset in sorted(ASSETS.glob("*.png")):
        drawn = _drawn(asset, side, bg)
        out[asset.stem] = (_diff(shown, drawn), _diff(shown.crop(corner), drawn.crop(corner)))
    return out


@pytest.mark.parametrize("backend", ["appindicator", "gtk"])
def test_every_health_and_preference_shows_its_own_icon(tmp_path: Path, backend: str) -> None:
    need_tools("import")
    need_gi()
    out = ARTIFACTS / "tray_states"
    out.mkdir(parents=True, exist_ok=True)
    strips: list[Image.Image] = []
    with xsession(tmp_path / "x", notifications=False) as x:
        proc = subprocess.Popen(
            [sys.executable, DRIVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**x.env, "PYSTRAY_BACKEND": backend},
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "READY"
            for health in HEALTHS:
                for pref, badge in PREFERENCES.items():
                    proc.stdin.write(f"show {health} {pref}\n")
                    proc.stdin.flush()
                    line = proc.stdout.readline()
                    assert line.startswith("SHOWN "), line
                    want = icon_name(health, badge)  # type: ignore[arg-type]
                    strip, found = _wait_for_icon(x, tmp_path / f"{want}.png", want)
                    best = min(found, key=lambda k: found[k][0])
                    report = f"{backend}: {health} x {pref}: {found}"
                    assert best == want, report
                    assert found[want][0] < 10, report
                    # the badge: its corner matches this preference's badge best
                    same_health = [k for k in found if k.split("-")[0] == health]
                    assert min(same_health, key=lambda k: found[k][1]) == want, report
                    strip.save(out / f"{backend}-{want}.png")
                    strips.append(strip)
            proc.stdin.write("quit\n")
            proc.stdin.flush()
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            err = proc.stderr.read() if proc.stderr else ""
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    assert "Traceback" not in err, err
    _sheet(strips, ARTIFACTS / f"tray_states_{backend}.png")


def _wait_for_icon(
    x: object, path: Path, want: str, tries: int = 30
) -> tuple[Image.Image, dict[str, tuple[float, float]]]:
    """Screenshot until the tray shows ``want`` (the update lands asynchronously)."""
    found: dict[str, tuple[float, float]] = {}
    strip = None
    for _ in range(tries):
        x.screenshot(path)  # type: ignore[attr-defined]
        with Image.open(path) as im:
            strip = im.convert("RGB").crop(TRAY_BOX)
        if icon_box(strip) is None:  # not shown yet
            time.sleep(0.3)
            continue
        found = scores(strip, place(strip, ASSETS / f"{want}.png"))
        if min(found, key=lambda k: found[k][0]) == want:
            break
        time.sleep(0.3)
    assert strip is not None and found, "no icon in the tray"
    return strip, found


def _sheet(strips: list[Image.Image], path: Path) -> None:
    """The strips in a grid: rows healthy/degraded/failing, columns auto/local/cloud."""
    w, h = strips[0].size
    cols = len(PREFERENCES)
    sheet = Image.new("RGB", (w * cols, h * len(HEALTHS)), (255, 255, 255))
    for n, strip in enumerate(strips):
        sheet.paste(strip, ((n % cols) * w, (n // cols) * h))
    sheet.resize((sheet.width * 2, sheet.height * 2), Image.Resampling.NEAREST).save(path)

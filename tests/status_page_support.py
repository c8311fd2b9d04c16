"""For tests/test_status_page.py: read the status page as a browser's DOM, run headless
Chromium, and compute WCAG contrast."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"  # git-ignored; CI keeps it
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- the page as a DOM


@dataclass
class Cell:
    tag: str
    attrs: dict[str, str | None]
    lines: list[str] = field(default_factory=lambda: [""])

    @property
    def text(self) -> str:
        return " ".join(line.strip() for line in self.lines if line.strip())

    @property
    def first_line(self) -> str:
        return self.lines[0].strip()


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]


class PageParser(HTMLParser):
    """Every element with its attributes, and the table: header cells, body rows of cells.

    Text is decoded the way a browser does, so an escaped ``<script>`` reads as that text.
    ``<br>``, ``<summary>`` and ``<li>`` start a new line of the current cell.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self.header: list[Cell] = []
        self.rows: list[list[Cell]] = []
        self.caption = ""
        self.text_parts: list[str] = []
        self._section = ""
        self._cell: Cell | None = None
        self._in_caption = False
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, dict(attrs)))
        if tag in ("thead", "tbody"):
            self._section = tag
        elif tag == "tr" and self._section == "tbody":
            self.rows.append([])
        elif tag in ("th", "td") and self._section:
            self._cell = Cell(tag, dict(attrs))
            (self.header if self._section == "thead" else self.rows[-1]).append(self._cell)
        elif tag in ("br", "summary", "li") and self._cell is not None:
            self._cell.lines.append("")  # a list item or a summary reads as a line of its own
        elif tag == "caption":
            self._in_caption = True
        elif tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td"):
            self._cell = None
        elif tag in ("thead", "tbody"):
            self._section = ""
        elif tag == "caption":
            self._in_caption = False
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            return
        self.text_parts.append(data)
        if self._cell is not None:
            self._cell.lines[-1] += data
        if self._in_caption:
            self.caption += data

    @property
    def text(self) -> str:
        return " ".join("".join(self.text_parts).split())

    @property
    def headers(self) -> list[str]:
        return [cell.text for cell in self.header]

    @property
    def project_order(self) -> list[str]:
        """Project IDs as the rows show them: the first line of each row's header cell."""
        return [row[0].first_line for row in self.rows if row and row[0].tag == "th"]

    def projects(self) -> dict[str, dict[str, Cell]]:
        """Each project's cells by column header."""
        return {
            row[0].first_line: dict(zip(self.headers, row, strict=True))
            for row in self.rows
            if row and row[0].tag == "th"
        }


def parse_page(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    parser.close()
    return parser


# ---------------------------------------------------------------- colour contrast


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def relative_luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of a ``#rgb`` or ``#rrggbb`` colour."""
    hex_digits = colour.lstrip("#")
    if len(hex_digits) == 3:
        hex_digits = "".join(d * 2 for d in hex_digits)
    r, g, b = (int(hex_digits[i : i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast_ratio(foreground: str, background: str) -> float:
    lighter, darker = sorted(
        (relative_luminance(foreground), relative_luminance(background)), reverse=True
    )
    return (lighter + 0.05) / (darker + 0.05)


def normalise_colour(colour: str) -> str:
    digits = colour.lower().lstrip("#")
    return "#" + ("".join(d * 2 for d in digits) if len(digits) == 3 else digits)


# ---------------------------------------------------------------- headless Chromium


def require_chromium() -> Path:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} is missing (Debian package chromium): run `make test`, "
            "which installs every tool the tests use"
        )
    return CHROMIUM


def run_chromium(*args: str, timeout: float = 60) -> str:
    """Run headless Chromium once with a throw-away profile; return its stdout.

    It runs in its own process group so that on a timeout its helper processes (zygote,
    renderer) are ended with it.
    """
    chromium = require_chromium()
    with tempfile.TemporaryDirectory(prefix="oms-exporter-chromium-") as profile:
        env = {**os.environ, "HOME": profile, "XDG_CONFIG_HOME": profile}
        env["XDG_CACHE_HOME"] = profile
        process = subprocess.Popen(
            [str(chromium), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except BaseException as error:
            # Chromium, the group's leader, is not reaped yet: the group ID is still ours.
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            if isinstance(error, subprocess.TimeoutExpired):
                pytest.fail(f"chromium did not finish within {timeout:.0f}s: {stderr[-2000:]}")
            raise
        if process.returncode != 0:
            pytest.fail(f"chromium exited {process.returncode}: {stderr[-2000:]}")
        return stdout


def screenshot(url: str, path: Path, *, width: int = 1400, height: int = 900) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    run_chromium(f"--screenshot={path}", f"--window-size={width},{height}", url)


def dump_dom(url: str) -> str:
    return run_chromium("--dump-dom", url)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk; fails if the file is not a PNG."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    assert data[12:16] == b"IHDR", f"{path} has no IHDR chunk"
    width, height = struct.unpack(">II", data[16:24])
    return width, height

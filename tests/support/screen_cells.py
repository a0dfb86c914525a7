"""Read what a Textual app put on screen, cell by cell, as the terminal would get it."""

from __future__ import annotations

from rich.style import Style
from textual.app import App
from textual.color import Color
from textual.geometry import Region


def screen_cells(app: App) -> list[list[tuple[str, Style]]]:
    """Every cell of the current screen (character, style), after the app's line filters."""
    background = Color.parse("black")
    rows = []
    for strip in app.screen._compositor.render_strips():
        segments = list(strip)
        for line_filter in app.get_line_filters():
            segments = line_filter.apply(segments, background)
        row: list[tuple[str, Style]] = []
        for segment in segments:
            if segment.control:
                continue
            style = segment.style or Style()
            row.extend((char, style) for char in segment.text)
        rows.append(row)
    return rows


def region_text(app: App, region: Region) -> list[str]:
    """The text inside ``region``, one string per row, trailing spaces removed."""
    cells = screen_cells(app)
    return ["".join(ch for ch, _ in cells[y][region.x:region.right]).rstrip()
            for y in range(region.y, region.bottom)]


def screen_text(app: App) -> str:
    return "\n".join("".join(ch for ch, _ in row).rstrip() for row in screen_cells(app))

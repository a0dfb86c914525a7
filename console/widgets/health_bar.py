"""The header line: is each storage tier up, and how many users are in each status."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from ..tokens import Status
from .status_badge import status_label

# The tiers the operator always wants to see, in hierarchy order, and the names tiers go by.
SLOTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("database", ("database", "postgres", "postgresql")),
    ("redis", ("redis", "cache", "memory")),
    ("file", ("file",)),
    ("env", ("env",)),
    ("key", ("key",)),
)
STATE_WORDS = {"up": "up", "down": "DOWN", "not configured": "off"}
MAX_LINES = 2   # the header never takes a third line: it says less instead


def tier_states(health) -> list[tuple[str, str, str]]:
    """``[(slot, state, detail)]`` for every slot; a tier the store lacks is 'not configured'."""
    by_name = {h.name: h for h in health}
    out = []
    for slot, names in SLOTS:
        found = next((by_name[n] for n in names if n in by_name), None)
        out.append((slot, found.state, found.detail) if found else (slot, "not configured", ""))
    return out


class HealthBar(Widget):
    """``database off  redis off  file up  env up  key off │ 3 users: 2 ✓ active …``.

    Wraps between items, never inside one, so a status word is never split over two lines.
    Where two lines are not enough it says less: the tiers that are off become one count,
    then the statuses keep their mark and lose their word (the tooltip has everything).
    """

    DEFAULT_CSS = "HealthBar { height: auto; }"

    COMPONENT_CLASSES = {
        "health-bar--health-up", "health-bar--health-down", "health-bar--health-off",
        "health-bar--status-active", "health-bar--status-expiring",
        "health-bar--status-expired_refreshable", "health-bar--status-expired",
        "health-bar--status-needs_login", "health-bar--status-locked",
        "health-bar--status-needs_login", "health-bar--status-account_disabled",
        "health-bar--status-oauth_not_allowed",
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.states: list[tuple[str, str, str]] = []
        self.counts: dict[Status, int] = {}
        self.checked = False

    def show(self, health, counts: dict[Status, int]) -> None:
        self.states = tier_states(health)
        self.counts = counts
        self.checked = True
        self.tooltip = "\n".join(f"{slot}: {state}{' — ' + detail if detail else ''}"
                                 for slot, state, detail in self.states)
        self.refresh(layout=True)

    def items(self, brief: int = 0) -> list[tuple[str, Text]]:
        """``[(separator, item)]`` in reading order; ``brief`` 1 and 2 say less (see the class)."""
        if not self.checked:
            return [("", Text("storage: checking…"))]
        out: list[tuple[str, Text]] = []
        off = [slot for slot, state, _ in self.states if state not in ("up", "down")] if brief else []
        for slot, state, _ in self.states:
            if slot in off:
                continue
            style = {"up": "health-up", "down": "health-down"}.get(state, "health-off")
            item = Text.assemble((f"{slot} ", "bold"), (STATE_WORDS.get(state, state), self._style(style)))
            out.append(("  " if out else "", item))
        if off:
            out.append(("  " if out else "", Text(f"{len(off)} off", style=self._style("health-off"))))
        total = sum(self.counts.values())
        out.append(("  │ ", Text(f"{total} user{'s' if total != 1 else ''}" + (":" if total else ""),
                                 style="bold")))
        first = True
        for status in sorted(self.counts, key=lambda s: s.urgency):
            n = self.counts[status]
            if n:
                label = status_label(status).split(" ", 1)[0] if brief > 1 else status_label(status)
                out.append((" " if first else " · ",
                            Text(f"{n} {label}", style=self._style(f"status-{status.value}"))))
                first = False
        return out

    def lines(self, width: int) -> list[Text]:
        for brief in range(3):
            lines = self._wrapped(self.items(brief), width)
            if len(lines) <= MAX_LINES:
                return lines
        return lines[:MAX_LINES]

    @staticmethod
    def _wrapped(items: list[tuple[str, Text]], width: int) -> list[Text]:
        lines: list[Text] = [Text()]
        for separator, item in items:
            line = lines[-1]
            if line.cell_len and line.cell_len + len(separator) + item.cell_len > width:
                lines.append(item.copy())
            else:
                line.append(separator)
                line.append_text(item)
        return lines

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self.lines(width))

    def render(self) -> Text:
        return Text("\n").join(self.lines(self.content_region.width or self.size.width))

    def _style(self, component: str):
        return self.get_component_rich_style(f"health-bar--{component}", partial=True)

"""The command palette's own provider: every key of the current screen, searchable by name."""

from __future__ import annotations

from functools import partial
from typing import Iterator

from textual.command import DiscoveryHit, Hit, Hits, Provider

# Keys that move focus or open the palette itself: listing them would only be noise.
_SKIP = {"focus_next", "focus_previous", "app.focus_next", "app.focus_previous", "command_palette",
         "app.command_palette", "copy_text", "screen.copy_text"}


class ScreenKeysProvider(Provider):
    """Built from the bindings active on the screen the palette was opened from."""

    def _commands(self) -> Iterator[tuple[str, str, object]]:
        seen: set[tuple[int, str]] = set()
        app = self.app
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if binding.action in _SKIP or not binding.description:
                continue
            ident = (id(active.node), binding.action)
            if ident in seen:
                continue
            seen.add(ident)
            name = binding.tooltip or binding.description
            yield name, app.get_key_display(binding), partial(app.run_action, binding.action, active.node)

    async def discover(self) -> Hits:
        for name, key, run in self._commands():
            yield DiscoveryHit(name, run, help=f"key: {key}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, key, run in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), run, help=f"key: {key}")

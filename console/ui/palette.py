"""The command palette's own provider: every key of the current screen, searchable by name."""

from __future__ import annotations

from functools import partial
from typing import Iterator

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .keys import NOISE, listed_bindings

# The palette itself is no command of the screen: listing it would only be noise.
_SKIP = NOISE | {"command_palette", "app.command_palette"}


class ScreenKeysProvider(Provider):
    """Built from the bindings active on the screen the palette was opened from."""

    def _commands(self) -> Iterator[tuple[str, str, object]]:
        seen: set[tuple[int, str]] = set()
        app = self.app
        for active in listed_bindings(self.screen, _SKIP):
            binding = active.binding
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

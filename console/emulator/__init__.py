"""A local stand-in for Claude's OAuth and API endpoints (tests, benchmarks, sandbox mode).

Nothing here talks to Anthropic; tokens it issues are worthless anywhere else.
"""

from .app import create_app
from .server import EmulatorServer
from .state import EmulatorState

__all__ = ["EmulatorState", "create_app", "EmulatorServer"]

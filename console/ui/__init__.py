"""The TUI's own helpers, below ``screens/`` and ``widgets/``: the command-palette provider
(``palette``) and the key list it shares with the help screen (``keys``), the stylesheet lookup
(``styles``), the worker messages and the failure line (``messages``), and the typed app accessor
(``host``). Nothing here imports a screen.
"""

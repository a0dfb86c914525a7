"""Widgets of the Textual console."""

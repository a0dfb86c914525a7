"""Screens of the Textual console."""

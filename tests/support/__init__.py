"""Helpers the tests share (importable as ``support``: ``tests/`` is on pytest's ``pythonpath``).

Test files import from here, from their folder's ``helpers``, or use conftest fixtures; never
from another test file.
"""

"""Dialogs over the current screen (ModalScreen): a yes/no question, the key list."""

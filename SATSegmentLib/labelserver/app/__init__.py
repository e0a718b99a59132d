"""The folder MONAI Label is started with (`--app`): it loads main.py from here."""

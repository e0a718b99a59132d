"""Official SAT models: registry (data in registry.json), per-user cache, download, verify, import, remove.

Downloads happen only when `download()` is called (never implicitly) and use only the standard library.

    registry.py   the official models as data: names, files, URLs, display names, licence
    cache.py      the per-user cache on disk: where models live, installed, list, verify, remove
    storage.py    writing there safely: one install at a time, umask permissions, temp files, clear errors
    download.py   one resumable, checksummed HTTP download
    pair.py       the strict check that two files are a model `segment` will load
    install.py    download a model, and install a staged model folder in one step
    importer.py   install from local files, found by name or by content
"""

from .registry import display_name, entry, file_url, licence_note, registry
from .cache import ModelStatus, installed, list_models, model_home, path_for, remove, verify
from .download import download_file
from .importer import import_model
from .install import download, sat_config_for

__all__ = [
    "ModelStatus", "display_name", "download", "download_file", "entry", "file_url", "import_model", "installed",
    "licence_note", "list_models", "model_home", "path_for", "registry", "remove", "sat_config_for",
    "verify",
]

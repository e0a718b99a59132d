"""Official SAT models: registry (data in registry.json), per-user cache, download, verify, import, remove.

Downloads happen only when `download()` is called (never implicitly) and use only the standard library.
"""

from .download import download_file
from .store import (
    ModelStatus,
    download,
    entry,
    file_url,
    import_model,
    installed,
    licence_note,
    list_models,
    model_home,
    path_for,
    registry,
    remove,
    sat_config_for,
    verify,
)

__all__ = [
    "ModelStatus", "download", "download_file", "entry", "file_url", "import_model", "installed",
    "licence_note", "list_models", "model_home", "path_for", "registry", "remove", "sat_config_for",
    "verify",
]

"""One sub-package per domain, each with its ``models.py`` and ``store.py``."""

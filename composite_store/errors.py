"""The error types of the public API (SPEC §7).

Every exception that leaves a domain store is one of these; driver exceptions are chained as
``__cause__`` so their text is kept without leaking driver types to callers.
"""

from __future__ import annotations


class CompositeStoreError(Exception):
    """Base class of every error composite-store raises on purpose."""


class ConfigurationError(CompositeStoreError):
    """The configuration (URLs, domain names, options) cannot be used."""


class ValidationError(CompositeStoreError, ValueError):
    """An argument was rejected before anything was written."""


class NotFoundError(CompositeStoreError, LookupError):
    """The object an update refers to does not exist."""


class ConflictError(CompositeStoreError):
    """Another writer changed the object first (a failed compare-and-set)."""


class SchemaOutOfDateError(CompositeStoreError):
    """A domain's schema is not at the head revision and migrations were not allowed to run."""


class DomainUnavailableError(CompositeStoreError, ConnectionError):
    """A domain's database cannot be reached. Names the domain and its masked URL."""

    def __init__(self, domain: str, masked_url: str, reason: str) -> None:
        super().__init__(f"domain {domain!r} is unavailable at {masked_url}: {reason}")
        self.domain = domain
        self.masked_url = masked_url

"""Where each domain lives: URLs from arguments or the environment, normalised and validated.

Everything about a URL is decided here, once, at construction: later layers receive a
``DomainConfig`` that is known to be usable and never see a raw string again.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from composite_store.errors import ConfigurationError
from composite_store.registry import DOMAINS, backends_for

DEFAULT_URL = "sqlite+aiosqlite:///./composite_store.db"
DEFAULT_URL_VAR = "COMPOSITE_STORE_URL"

# scheme as written -> (backend, driver-qualified scheme)
_SCHEMES: dict[str, tuple[str, str]] = {
    "sqlite": ("sqlite", "sqlite+aiosqlite"),
    "sqlite+aiosqlite": ("sqlite", "sqlite+aiosqlite"),
    "postgresql": ("postgresql", "postgresql+asyncpg"),
    "postgres": ("postgresql", "postgresql+asyncpg"),
    "postgresql+asyncpg": ("postgresql", "postgresql+asyncpg"),
    "clickhouse": ("clickhouse", "clickhouse+native"),
    "clickhouse+native": ("clickhouse", "clickhouse+native"),
    "clickhouse+http": ("clickhouse", "clickhouse+http"),
}


def domain_url_var(domain: str) -> str:
    """The environment variable that overrides one domain's URL."""
    return f"COMPOSITE_STORE_{domain.upper()}_URL"


def mask_url(url: URL | str) -> str:
    """Render a URL with its password replaced by ``***`` (safe for logs, errors and CLI)."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except (ArgumentError, ValueError):
            return "<unparsable URL>"
    return url.render_as_string(hide_password=True)


@dataclass(frozen=True)
class DomainConfig:
    """One domain's resolved database: the normalised URL and where it came from."""

    domain: str
    url: URL
    backend: str
    source: str  # the variable or argument the URL was read from
    is_default: bool

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    @property
    def engine_key(self) -> str:
        """Equal keys share one engine; the password is part of the key but never shown."""
        return self.url.render_as_string(hide_password=False)

    def __repr__(self) -> str:
        return (
            f"DomainConfig(domain={self.domain!r}, url={self.masked_url!r}, "
            f"backend={self.backend!r}, source={self.source!r}, is_default={self.is_default})"
        )


def normalize_url(raw: str | URL, *, domain: str, source: str) -> tuple[URL, str]:
    """Parse ``raw`` and give it our async driver; returns ``(url, backend)``.

    Errors name the domain, the variable and the reason, but never the password.
    """

    def fail(reason: str) -> ConfigurationError:
        return ConfigurationError(f"domain {domain!r}: {source} is not usable: {reason}")

    if isinstance(raw, str):
        if not raw.strip():
            raise fail("the URL is empty")
        try:
            url = make_url(raw.strip())
        except (ArgumentError, ValueError):  # ValueError: e.g. a non-numeric port
            raise fail("the URL cannot be parsed") from None
    else:
        url = raw
    scheme = url.drivername.lower()
    if scheme not in _SCHEMES:
        known = ", ".join(sorted({s.split("+")[0] for s in _SCHEMES}))
        raise fail(f"unknown scheme {url.drivername!r} (supported: {known})")
    backend, drivername = _SCHEMES[scheme]
    if domain in DOMAINS and backend not in backends_for(domain):
        allowed = ", ".join(sorted(backends_for(domain)))
        raise fail(f"{backend} cannot hold the {domain} domain (supported: {allowed})")
    if backend != "sqlite" and not url.host:
        raise fail(f"a {backend} URL needs a host")
    return url.set(drivername=drivername), backend


def _check_domain(domain: str, source: str) -> None:
    if domain not in DOMAINS:
        raise ConfigurationError(
            f"unknown domain {domain!r} in {source} (domains: {', '.join(DOMAINS)})"
        )


@dataclass(frozen=True)
class StoreConfig:
    """The resolved configuration of every domain."""

    default: DomainConfig
    domains: Mapping[str, DomainConfig]

    @classmethod
    def build(
        cls,
        default: str | URL | None = None,
        domains: Mapping[str, str | URL | None] | None = None,
        *,
        default_source: str = "the 'default' argument",
        domain_sources: Mapping[str, str] | None = None,
    ) -> StoreConfig:
        """Resolve explicit URLs; a domain without one falls back to the default."""
        overrides = {name: raw for name, raw in (domains or {}).items() if raw is not None}
        sources = dict(domain_sources or {})
        for name in overrides:
            _check_domain(name, sources.get(name, "the 'domains' argument"))
        raw_default = DEFAULT_URL if default is None else default
        url, backend = normalize_url(raw_default, domain="(default)", source=default_source)
        default_cfg = DomainConfig("(default)", url, backend, default_source, is_default=True)
        resolved: dict[str, DomainConfig] = {}
        for name in DOMAINS:
            # The default is checked again per domain: it must suit each domain falling back to it.
            is_default = name not in overrides
            source = default_source if is_default else sources.get(name, f"domains[{name!r}]")
            url, backend = normalize_url(
                raw_default if is_default else overrides[name], domain=name, source=source
            )
            resolved[name] = DomainConfig(name, url, backend, source, is_default)
        return cls(default=default_cfg, domains=resolved)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StoreConfig:
        """Resolve ``COMPOSITE_STORE_URL`` and ``COMPOSITE_STORE_<DOMAIN>_URL``."""
        env = os.environ if environ is None else environ
        prefix, suffix = "COMPOSITE_STORE_", "_URL"
        for var in env:
            if var.startswith(prefix) and var.endswith(suffix) and var != DEFAULT_URL_VAR:
                name = var[len(prefix) : -len(suffix)].lower()
                _check_domain(name, var)
        overrides = {d: env[domain_url_var(d)] for d in DOMAINS if env.get(domain_url_var(d))}
        return cls.build(
            env.get(DEFAULT_URL_VAR) or None,
            overrides,
            default_source=DEFAULT_URL_VAR if env.get(DEFAULT_URL_VAR) else "the built-in default",
            domain_sources={d: domain_url_var(d) for d in overrides},
        )

    def __getitem__(self, domain: str) -> DomainConfig:
        _check_domain(domain, "get_store()")
        return self.domains[domain]

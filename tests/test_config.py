"""Configuration: where each domain lives, and how bad configuration is refused.

Covers SPEC §2 (URLs from arguments and the environment, normalisation, validation, masked
passwords), the accessors of §3 (``get_store``, the shortcuts, ``engine``, ``describe``), §7
(``ConfigurationError``) and the masking in the ``status`` command of §8.

No database server is needed: engines are created but never connected, except to SQLite files
in ``tmp_path`` and to a closed local port (for the CLI's "unreachable" row).
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

import composite_store
from composite_store import CompositeStore
from composite_store.cli import main
from composite_store.config import StoreConfig
from composite_store.domains.agents.store import AgentsStore
from composite_store.domains.memory.store import MemoryStore
from composite_store.domains.observability.store import ObservabilityStore
from composite_store.domains.scores.store import ScoresStore
from composite_store.domains.workflows.store import WorkflowsStore
from composite_store.errors import CompositeStoreError, ConfigurationError

DOMAINS = ("memory", "workflows", "scores", "observability", "agents")
BUILT_IN_DEFAULT = "sqlite+aiosqlite:///./composite_store.db"
PASSWORD = "Sup3rS3cret"
PG_WITH_PASSWORD = f"postgresql://app:{PASSWORD}@db.example/app"
RELATIONAL_ONLY = ("memory", "workflows", "agents")
STORE_CLASSES = {
    "memory": MemoryStore,
    "workflows": WorkflowsStore,
    "scores": ScoresStore,
    "observability": ObservabilityStore,
    "agents": AgentsStore,
}


def env_var(domain: str) -> str:
    return f"COMPOSITE_STORE_{domain.upper()}_URL"


@pytest.fixture
async def keep() -> AsyncIterator[Callable[[CompositeStore], CompositeStore]]:
    """Register a composite so that it is closed after the test, whatever happens."""
    stores: list[CompositeStore] = []

    def register(store: CompositeStore) -> CompositeStore:
        stores.append(store)
        return store

    yield register
    for store in stores:
        await store.close()


Resolved = dict[str, tuple[str, bool]]  # domain -> (url, is_default)


@pytest.fixture(params=["StoreConfig.from_env", "CompositeStore.from_env"])
def resolve(
    request: pytest.FixtureRequest, keep: Callable[[CompositeStore], CompositeStore]
) -> Callable[[Mapping[str, str]], Resolved]:
    """Resolve an environment through either public entry point (URLs here have no password)."""

    def via_config(environ: Mapping[str, str]) -> Resolved:
        config = StoreConfig.from_env(environ)
        assert set(config.domains) == set(DOMAINS)
        return {
            d: (c.url.render_as_string(hide_password=False), c.is_default)
            for d, c in config.domains.items()
        }

    def via_store(environ: Mapping[str, str]) -> Resolved:
        store = keep(CompositeStore.from_env(environ))
        described = store.describe()
        assert set(described) == set(DOMAINS)
        return {d: (info["url"], info["is_default"]) for d, info in described.items()}

    return via_config if request.param == "StoreConfig.from_env" else via_store


# -- domain names -----------------------------------------------------------------------------


def test_domains_is_the_tuple_of_five_in_spec_order() -> None:
    """``composite_store.DOMAINS`` is exactly the five names, as a tuple, in the SPEC's order."""
    assert composite_store.DOMAINS == DOMAINS
    assert isinstance(composite_store.DOMAINS, tuple)


# -- resolution from the environment ----------------------------------------------------------


def test_no_variables_put_every_domain_on_the_embedded_default(
    resolve: Callable[[Mapping[str, str]], Resolved],
) -> None:
    """Without any variable, every domain uses ./composite_store.db through aiosqlite."""
    assert resolve({}) == {d: (BUILT_IN_DEFAULT, True) for d in DOMAINS}


def test_unrelated_variables_are_ignored(
    resolve: Callable[[Mapping[str, str]], Resolved],
) -> None:
    """Variables that are not COMPOSITE_STORE_*_URL do not change anything."""
    environ = {"DATABASE_URL": "postgresql://x@h/y", "COMPOSITE_STORE_TEST_POSTGRES": "junk"}
    assert resolve(environ) == {d: (BUILT_IN_DEFAULT, True) for d in DOMAINS}


def test_default_url_variable_sets_every_domain(
    resolve: Callable[[Mapping[str, str]], Resolved],
) -> None:
    """COMPOSITE_STORE_URL is the URL of every domain, normalised, and each is still default."""
    resolved = resolve({"COMPOSITE_STORE_URL": "postgresql://app@db.example:5433/app"})
    assert resolved == {d: ("postgresql+asyncpg://app@db.example:5433/app", True) for d in DOMAINS}


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_variable_overrides_that_domain_only(
    domain: str, resolve: Callable[[Mapping[str, str]], Resolved], tmp_path: Path
) -> None:
    """COMPOSITE_STORE_<DOMAIN>_URL moves one domain (not default); the rest keep the default."""
    default = f"sqlite+aiosqlite:///{tmp_path}/shared.db"
    resolved = resolve(
        {"COMPOSITE_STORE_URL": default, env_var(domain): "postgresql://app@db.example/own"}
    )
    assert resolved[domain] == ("postgresql+asyncpg://app@db.example/own", False)
    assert {d: v for d, v in resolved.items() if d != domain} == {
        d: (default, True) for d in DOMAINS if d != domain
    }


def test_domain_variable_without_default_variable_falls_back_to_built_in(
    resolve: Callable[[Mapping[str, str]], Resolved],
) -> None:
    """With only a per-domain variable, the other domains stay on the embedded default."""
    resolved = resolve({"COMPOSITE_STORE_WORKFLOWS_URL": "postgres://app@db.example/wf"})
    assert resolved["workflows"] == ("postgresql+asyncpg://app@db.example/wf", False)
    for domain in ("memory", "scores", "observability", "agents"):
        assert resolved[domain] == (BUILT_IN_DEFAULT, True)


def test_empty_variables_count_as_unset(
    resolve: Callable[[Mapping[str, str]], Resolved],
) -> None:
    """An empty COMPOSITE_STORE_URL or per-domain variable behaves as if it were not set."""
    environ = {"COMPOSITE_STORE_URL": ""} | {env_var(d): "" for d in DOMAINS}
    assert resolve(environ) == {d: (BUILT_IN_DEFAULT, True) for d in DOMAINS}


def test_empty_domain_variable_falls_back_to_the_default_variable(
    resolve: Callable[[Mapping[str, str]], Resolved],
) -> None:
    """An empty per-domain variable gives that domain the COMPOSITE_STORE_URL default."""
    resolved = resolve(
        {"COMPOSITE_STORE_URL": "postgresql://app@db.example/app", env_var("memory"): ""}
    )
    assert resolved["memory"] == ("postgresql+asyncpg://app@db.example/app", True)


async def test_from_env_without_argument_reads_the_process_environment(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, keep: Callable[..., CompositeStore]
) -> None:
    """``from_env()`` with no mapping reads os.environ (both entry points)."""
    monkeypatch.setenv("COMPOSITE_STORE_SCORES_URL", "postgresql://app@db.example/scores")
    config = StoreConfig.from_env()
    assert str(config.domains["scores"].url) == "postgresql+asyncpg://app@db.example/scores"
    assert config.domains["scores"].is_default is False
    assert str(config.domains["memory"].url) == BUILT_IN_DEFAULT
    store = keep(CompositeStore.from_env())
    assert store.describe()["scores"]["url"] == "postgresql+asyncpg://app@db.example/scores"
    assert store.describe()["memory"]["is_default"] is True


async def test_explicit_arguments_resolve_like_the_environment(
    keep: Callable[[CompositeStore], CompositeStore],
) -> None:
    """``CompositeStore(default, domains)``: named domains override, the rest use ``default``."""
    store = keep(
        CompositeStore(
            default="postgres://app@db.example/app",
            domains={"agents": "sqlite:///agents.db", "memory": None},  # None = not overridden
        )
    )
    described = store.describe()
    assert described["agents"] == {
        "backend": "sqlite",
        "url": "sqlite+aiosqlite:///agents.db",
        "is_default": False,
    }
    for domain in ("memory", "workflows", "scores", "observability"):
        assert described[domain] == {
            "backend": "postgresql",
            "url": "postgresql+asyncpg://app@db.example/app",
            "is_default": True,
        }


async def test_no_arguments_use_the_embedded_default(
    keep: Callable[[CompositeStore], CompositeStore],
) -> None:
    """``CompositeStore()`` puts every domain on the embedded SQLite default."""
    described = keep(CompositeStore()).describe()
    assert described == {
        d: {"backend": "sqlite", "url": BUILT_IN_DEFAULT, "is_default": True} for d in DOMAINS
    }


# -- normalisation ----------------------------------------------------------------------------

RELATIONAL_NORMALISATION = [
    ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ("sqlite:////abs/path/x.db", "sqlite+aiosqlite:////abs/path/x.db"),
    ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ("postgresql://app@db.example/app", "postgresql+asyncpg://app@db.example/app"),
    ("postgres://app@db.example/app", "postgresql+asyncpg://app@db.example/app"),
    (
        "postgresql://app@db.example:6432/app?ssl=require",
        "postgresql+asyncpg://app@db.example:6432/app?ssl=require",
    ),
    ("postgresql+asyncpg://app@db.example/app", "postgresql+asyncpg://app@db.example/app"),
]


@pytest.mark.parametrize(("raw", "expected"), RELATIONAL_NORMALISATION)
def test_relational_urls_get_the_async_driver(
    raw: str, expected: str, resolve: Callable[[Mapping[str, str]], Resolved]
) -> None:
    """Driver-less SQLite/PostgreSQL URLs get aiosqlite/asyncpg; qualified ones are unchanged."""
    by_domain = resolve({env_var("memory"): raw})
    assert by_domain["memory"] == (expected, False)
    by_default = resolve({"COMPOSITE_STORE_URL": raw})
    assert by_default == {d: (expected, True) for d in DOMAINS}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("clickhouse://ch.example:9000/obs", "clickhouse+native://ch.example:9000/obs"),
        ("clickhouse+native://ch.example:9000/obs", "clickhouse+native://ch.example:9000/obs"),
        ("clickhouse+http://ch.example:8123/obs", "clickhouse+http://ch.example:8123/obs"),
    ],
)
@pytest.mark.parametrize("domain", ["observability", "scores"])
def test_clickhouse_urls_are_normalised_for_analytical_domains(
    domain: str, raw: str, expected: str
) -> None:
    """``clickhouse://`` becomes ``clickhouse+native://`` for observability and scores."""
    for config in (
        StoreConfig.from_env({env_var(domain): raw}),
        StoreConfig.build(domains={domain: raw}),
    ):
        cfg = config.domains[domain]
        assert str(cfg.url) == expected
        assert cfg.backend == "clickhouse"
        assert cfg.is_default is False
        assert str(config.domains["memory"].url) == BUILT_IN_DEFAULT


async def test_composite_accepts_clickhouse_for_observability(
    keep: Callable[[CompositeStore], CompositeStore],
) -> None:
    """The SPEC §3 example (observability on ``clickhouse://ch:9000/obs``) constructs."""
    store = keep(CompositeStore(domains={"observability": "clickhouse://ch:9000/obs"}))
    assert store.describe()["observability"] == {
        "backend": "clickhouse",
        "url": "clickhouse+native://ch:9000/obs",
        "is_default": False,
    }


def test_normalisation_keeps_the_password() -> None:
    """Normalising changes only the driver: credentials still reach the engine."""
    cfg = StoreConfig.build(PG_WITH_PASSWORD).domains["memory"]
    assert cfg.url.drivername == "postgresql+asyncpg"
    assert (cfg.url.username, cfg.url.password, cfg.url.host, cfg.url.database) == (
        "app",
        PASSWORD,
        "db.example",
        "app",
    )


# -- bad configuration ------------------------------------------------------------------------


def assert_names(exc: BaseException, *fragments: str) -> None:
    """The error is a ConfigurationError whose message contains every fragment."""
    assert isinstance(exc, ConfigurationError)
    assert isinstance(exc, CompositeStoreError)
    message = str(exc)
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in {message!r}"


@pytest.fixture(params=["StoreConfig.from_env", "CompositeStore.from_env"])
def load_env(
    request: pytest.FixtureRequest, keep: Callable[[CompositeStore], CompositeStore]
) -> Callable[[Mapping[str, str]], object]:
    """Either environment entry point (a composite built by mistake is still closed)."""
    if request.param == "StoreConfig.from_env":
        return StoreConfig.from_env
    return lambda environ: keep(CompositeStore.from_env(environ))


@pytest.mark.parametrize("domain", RELATIONAL_ONLY)
def test_env_clickhouse_for_a_relational_domain_is_refused(
    domain: str, load_env: Callable[[Mapping[str, str]], object]
) -> None:
    """ClickHouse cannot hold memory/workflows/agents: the error names domain, variable, reason."""
    with pytest.raises(ConfigurationError) as caught:
        load_env({env_var(domain): "clickhouse://ch.example:9000/x"})
    assert_names(caught.value, repr(domain), env_var(domain), "clickhouse")


def test_env_clickhouse_default_is_refused_for_the_domains_falling_back(
    load_env: Callable[[Mapping[str, str]], object],
) -> None:
    """A ClickHouse COMPOSITE_STORE_URL is refused for memory, which falls back to it."""
    with pytest.raises(ConfigurationError) as caught:
        load_env({"COMPOSITE_STORE_URL": "clickhouse://ch.example:9000/x"})
    assert_names(caught.value, "'memory'", "COMPOSITE_STORE_URL", "clickhouse")


def test_env_clickhouse_default_is_checked_for_each_falling_back_domain(
    load_env: Callable[[Mapping[str, str]], object], tmp_path: Path
) -> None:
    """With memory and workflows moved away, the error names agents, still falling back."""
    environ = {
        "COMPOSITE_STORE_URL": "clickhouse://ch.example:9000/x",
        env_var("memory"): f"sqlite:///{tmp_path}/m.db",
        env_var("workflows"): f"sqlite:///{tmp_path}/w.db",
    }
    with pytest.raises(ConfigurationError) as caught:
        load_env(environ)
    assert_names(caught.value, "'agents'", "COMPOSITE_STORE_URL", "clickhouse")
    assert "'memory'" not in str(caught.value)


ENV_ERRORS = [
    pytest.param(
        {env_var("observability"): "mysql://u@h/x"},
        ("'observability'", env_var("observability"), "mysql", "scheme"),
        id="unknown-scheme",
    ),
    pytest.param(
        {"COMPOSITE_STORE_URL": "mysql://u@h/x"},
        ("COMPOSITE_STORE_URL", "mysql", "scheme"),
        id="unknown-scheme-in-default",
    ),
    pytest.param(
        {"COMPOSITE_STORE_NOPE_URL": "sqlite:///x.db"},
        ("'nope'", "COMPOSITE_STORE_NOPE_URL", "unknown domain"),
        id="unknown-domain",
    ),
    pytest.param(
        {env_var("memory"): "this is not a url"},
        ("'memory'", env_var("memory"), "pars"),
        id="unparsable",
    ),
    pytest.param(
        {env_var("memory"): "postgresql://app@db.example:notaport/app"},
        ("'memory'", env_var("memory")),
        id="unparsable-port",
    ),
    pytest.param(
        {env_var("agents"): "postgresql:///app"},
        ("'agents'", env_var("agents"), "host"),
        id="postgres-without-host",
    ),
    pytest.param(
        {env_var("scores"): "   "},
        ("'scores'", env_var("scores"), "empty"),
        id="blank",
    ),
]


@pytest.mark.parametrize(("environ", "fragments"), ENV_ERRORS)
def test_env_bad_configuration_raises_configuration_error(
    environ: dict[str, str],
    fragments: tuple[str, ...],
    load_env: Callable[[Mapping[str, str]], object],
) -> None:
    """Each bad environment is refused at construction, naming domain, variable and reason."""
    with pytest.raises(ConfigurationError) as caught:
        load_env(environ)
    assert_names(caught.value, *fragments)


ARGUMENT_ERRORS = [
    pytest.param(
        {"domains": {"memory": "clickhouse://ch/x"}},
        ("'memory'", "domains", "clickhouse"),
        id="clickhouse-memory",
    ),
    pytest.param(
        {"domains": {"workflows": "clickhouse+native://ch/x"}},
        ("'workflows'", "domains", "clickhouse"),
        id="clickhouse-workflows",
    ),
    pytest.param(
        {"domains": {"agents": "clickhouse+http://ch/x"}},
        ("'agents'", "domains", "clickhouse"),
        id="clickhouse-agents",
    ),
    pytest.param(
        {"default": "clickhouse://ch/x"},
        ("'memory'", "default", "clickhouse"),
        id="clickhouse-default",
    ),
    pytest.param(
        {"domains": {"scores": "mysql://u@h/x"}},
        ("'scores'", "mysql", "scheme"),
        id="unknown-scheme",
    ),
    pytest.param(
        {"default": "oracle://u@h/x"}, ("default", "oracle", "scheme"), id="unknown-scheme-default"
    ),
    pytest.param(
        {"domains": {"nope": "sqlite:///x.db"}},
        ("'nope'", "domains", "unknown domain"),
        id="unknown-domain",
    ),
    pytest.param({"domains": {"memory": "::not a url::"}}, ("'memory'", "pars"), id="unparsable"),
    pytest.param(
        {"domains": {"memory": "postgresql://app@db:notaport/app"}},
        ("'memory'",),
        id="unparsable-port",
    ),
    pytest.param({"domains": {"memory": ""}}, ("'memory'", "domains", "empty"), id="empty"),
    pytest.param({"default": ""}, ("default", "empty"), id="empty-default"),
    pytest.param(
        {"domains": {"workflows": "postgres:///app"}},
        ("'workflows'", "host"),
        id="postgres-without-host",
    ),
]


@pytest.mark.parametrize(("kwargs", "fragments"), ARGUMENT_ERRORS)
async def test_argument_bad_configuration_raises_configuration_error(
    kwargs: dict[str, Any],
    fragments: tuple[str, ...],
    keep: Callable[[CompositeStore], CompositeStore],
) -> None:
    """``CompositeStore(...)`` refuses each bad argument at construction, with a useful message."""
    with pytest.raises(ConfigurationError) as caught:
        keep(CompositeStore(**kwargs))
    assert_names(caught.value, *fragments)


# -- passwords are never shown ----------------------------------------------------------------


async def test_password_not_in_repr_or_describe(
    keep: Callable[[CompositeStore], CompositeStore],
) -> None:
    """repr of the store and of its config objects and describe() mask the password as ***."""
    store = keep(
        CompositeStore(
            default=PG_WITH_PASSWORD,
            domains={"observability": f"postgres://obs:{PASSWORD}@obs.example/traces"},
        )
    )
    shown = {
        "repr(store)": repr(store),
        "str(store)": str(store),
        "repr(config)": repr(store.config),
        "repr(default config)": repr(store.config.default),
        "repr(domain config)": repr(store.config.domains["memory"]),
        "repr(observability config)": repr(store.config.domains["observability"]),
        "describe()": str(store.describe()),
        "masked_url": store.config.domains["memory"].masked_url,
        "store.masked_url": store.observability.masked_url,
    }
    for where, text in shown.items():
        assert PASSWORD not in text, f"password shown in {where}: {text}"
        assert "***" in text, f"no masked URL in {where}: {text}"
    described = store.describe()
    assert described["memory"]["url"] == "postgresql+asyncpg://app:***@db.example/app"
    assert described["observability"]["url"] == "postgresql+asyncpg://obs:***@obs.example/traces"
    # ...while the engines still carry the real password.
    assert store.engine("memory").url.password == PASSWORD
    assert store.engine("observability").url.password == PASSWORD


async def test_password_not_in_repr_when_loaded_from_env(
    keep: Callable[[CompositeStore], CompositeStore],
) -> None:
    """A password given through the environment is masked the same way."""
    store = keep(CompositeStore.from_env({"COMPOSITE_STORE_URL": PG_WITH_PASSWORD}))
    for text in (repr(store), repr(store.config), str(store.describe())):
        assert PASSWORD not in text
        assert "app:***@db.example" in text


PASSWORD_ERRORS = [
    pytest.param({env_var("memory"): f"mysql://u:{PASSWORD}@h/x"}, id="env-unknown-scheme"),
    pytest.param({env_var("memory"): f"clickhouse://u:{PASSWORD}@h/x"}, id="env-clickhouse"),
    pytest.param({"COMPOSITE_STORE_URL": f"clickhouse://u:{PASSWORD}@h/x"}, id="env-ch-default"),
    pytest.param({env_var("agents"): f"postgresql://u:{PASSWORD}@/x"}, id="env-no-host"),
    pytest.param({env_var("memory"): f"postgresql//u:{PASSWORD}@h/x"}, id="env-unparsable"),
    pytest.param({"COMPOSITE_STORE_NOPE_URL": PG_WITH_PASSWORD}, id="env-unknown-domain"),
]


@pytest.mark.parametrize("environ", PASSWORD_ERRORS)
def test_password_not_in_configuration_error_from_env(
    environ: dict[str, str], load_env: Callable[[Mapping[str, str]], object]
) -> None:
    """The error (and its whole traceback, causes included) never shows the password."""
    with pytest.raises(ConfigurationError) as caught:
        load_env(environ)
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"default": f"mysql://u:{PASSWORD}@h/x"}, id="unknown-scheme"),
        pytest.param({"domains": {"memory": f"clickhouse://u:{PASSWORD}@h/x"}}, id="clickhouse"),
        pytest.param({"domains": {"agents": f"postgres://u:{PASSWORD}@/x"}}, id="no-host"),
        pytest.param({"domains": {"memory": f"postgresql//u:{PASSWORD}@h/x"}}, id="unparsable"),
        pytest.param({"domains": {"nope": PG_WITH_PASSWORD}}, id="unknown-domain"),
    ],
)
async def test_password_not_in_configuration_error_from_arguments(
    kwargs: dict[str, Any], keep: Callable[[CompositeStore], CompositeStore]
) -> None:
    """Explicit bad URLs with a password are refused without showing it."""
    with pytest.raises(ConfigurationError) as caught:
        keep(CompositeStore(**kwargs))
    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_status_masks_password_and_fails_for_an_unreachable_domain(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``status`` with observability on a closed port: masked URL, "not reachable", exit != 0.

    The other four domains are migrated first, so the non-zero exit is due to the down domain.
    """

    async def migrate_default() -> None:
        async with CompositeStore():  # the default file in the working directory (tmp_path)
            pass

    asyncio.run(migrate_default())
    monkeypatch.setenv(env_var("observability"), f"postgresql://app:{PASSWORD}@127.0.0.1:1/x")
    capsys.readouterr()

    code = main(["status"])

    out, err = capsys.readouterr()
    shown = out + err
    assert PASSWORD not in shown
    assert "postgresql+asyncpg://app:***@127.0.0.1:1/x" in shown
    assert code != 0
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert set(DOMAINS) <= set(rows)
    assert "NO" in rows["observability"], rows["observability"]
    for domain in ("memory", "workflows", "scores", "agents"):
        assert "yes" in rows[domain] and "NO" not in rows[domain], rows[domain]
        assert "(head)" in rows[domain], rows[domain]


def test_cli_status_with_bad_configuration_reports_it_without_password(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad URL in the environment makes ``status`` exit non-zero with a masked message."""
    monkeypatch.setenv(env_var("memory"), f"mysql://app:{PASSWORD}@db.example/app")

    code = main(["status"])

    out, err = capsys.readouterr()
    assert code != 0
    assert PASSWORD not in out + err
    assert env_var("memory") in err and "memory" in err and "mysql" in err


# -- get_store, the shortcuts and engines -----------------------------------------------------


@pytest.mark.parametrize("name", ["nope", "Memory", "", "default", "(default)"])
async def test_get_store_of_unknown_domain_raises_configuration_error(
    name: str, keep: Callable[[CompositeStore], CompositeStore]
) -> None:
    """``get_store`` and ``engine`` refuse names that are not one of the five domains."""
    store = keep(CompositeStore())
    with pytest.raises(ConfigurationError) as caught:
        store.get_store(name)
    assert repr(name) in str(caught.value)
    with pytest.raises(ConfigurationError):
        store.engine(name)


async def test_get_store_returns_one_object_per_domain_behind_each_shortcut(
    keep: Callable[[CompositeStore], CompositeStore],
) -> None:
    """Same object on every call, the same one as ``store.<domain>``, of the domain's class."""
    store = keep(CompositeStore())
    shortcuts = {
        "memory": lambda: store.memory,
        "workflows": lambda: store.workflows,
        "scores": lambda: store.scores,
        "observability": lambda: store.observability,
        "agents": lambda: store.agents,
    }
    for domain in DOMAINS:
        first = store.get_store(domain)
        assert store.get_store(domain) is first
        assert shortcuts[domain]() is first
        assert shortcuts[domain]() is shortcuts[domain]()
        assert isinstance(first, STORE_CLASSES[domain])
        assert first.domain == domain
        assert first.engine is store.engine(domain)
    assert len({id(store.get_store(d)) for d in DOMAINS}) == len(DOMAINS)


async def test_stores_of_two_composites_are_distinct(
    keep: Callable[[CompositeStore], CompositeStore],
) -> None:
    """Each composite owns its stores: nothing is cached across instances."""
    one, two = keep(CompositeStore()), keep(CompositeStore())
    assert one.memory is not two.memory
    assert one.engine("memory") is not two.engine("memory")


async def test_default_domains_share_one_engine(
    keep: Callable[[CompositeStore], CompositeStore],
) -> None:
    """With every domain on the default, all five use one engine (one pool)."""
    store = keep(CompositeStore())
    assert store.engine("memory") is store.engine("agents")
    assert len({id(store.engine(d)) for d in DOMAINS}) == 1
    # the engine may serve the URL with another SQLite driver (EngineOptions.sqlite_driver)
    assert store.engine("memory").url.database == "./composite_store.db"
    assert store.describe()["memory"]["url"] == BUILT_IN_DEFAULT


async def test_different_urls_get_different_engines(
    tmp_path: Path, keep: Callable[[CompositeStore], CompositeStore]
) -> None:
    """A domain on its own database gets its own engine; the others keep sharing theirs."""
    store = keep(
        CompositeStore(
            default=f"sqlite:///{tmp_path}/a.db", domains={"agents": f"sqlite:///{tmp_path}/b.db"}
        )
    )
    assert store.engine("memory") is not store.engine("agents")
    assert store.engine("memory") is store.engine("scores")
    assert store.engine("agents").url.database == f"{tmp_path}/b.db"
    assert store.engine("memory").url.database == f"{tmp_path}/a.db"


async def test_equivalent_spellings_share_one_engine(
    tmp_path: Path, keep: Callable[[CompositeStore], CompositeStore]
) -> None:
    """URLs equal after normalisation share an engine, even when one is an explicit override."""
    store = keep(
        CompositeStore(
            default=f"sqlite:///{tmp_path}/x.db",
            domains={
                "memory": f"sqlite+aiosqlite:///{tmp_path}/x.db",
                "scores": "postgres://app@db.example/app",
                "observability": "postgresql://app@db.example/app",
                "agents": "postgresql+asyncpg://app@db.example/app",
            },
        )
    )
    assert store.describe()["memory"]["is_default"] is False
    assert store.engine("memory") is store.engine("workflows")
    assert store.engine("scores") is store.engine("observability") is store.engine("agents")
    assert store.engine("memory") is not store.engine("scores")
    assert store.config["memory"].url.drivername == "sqlite+aiosqlite"  # normalised URL
    assert store.engine("scores").url.drivername == "postgresql+asyncpg"


async def test_env_spellings_share_one_engine(
    tmp_path: Path, keep: Callable[[CompositeStore], CompositeStore]
) -> None:
    """The same holds through from_env: sqlite:/// and sqlite+aiosqlite:/// are one database."""
    store = keep(
        CompositeStore.from_env(
            {
                "COMPOSITE_STORE_URL": f"sqlite:///{tmp_path}/x.db",
                env_var("agents"): f"sqlite+aiosqlite:///{tmp_path}/x.db",
            }
        )
    )
    assert store.engine("agents") is store.engine("memory")


async def test_urls_differing_only_in_password_do_not_share_an_engine(
    keep: Callable[[CompositeStore], CompositeStore],
) -> None:
    """Masked URLs look equal, but different credentials must not share one pool."""
    store = keep(
        CompositeStore(
            default=PG_WITH_PASSWORD,
            domains={"observability": "postgresql://app:other-secret@db.example/app"},
        )
    )
    described = store.describe()
    assert described["memory"]["url"] == described["observability"]["url"]
    assert store.engine("memory") is not store.engine("observability")
    assert store.engine("observability").url.password == "other-secret"

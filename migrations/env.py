"""Alembic environment shared by every domain; ``alembic --name <domain>`` picks the domain."""

from logging.config import fileConfig

from alembic import context

from composite_store.schema import run_env

if context.config.config_file_name and "connection" not in context.config.attributes:
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)
if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported: migrate against a database")
run_env(context)

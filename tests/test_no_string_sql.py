"""No SQL built from strings in the package (SPEC §7's promise that values never become SQL).

The scan reads ``composite_store/**/*.py`` with ``ast`` and finds every call that hands SQL text
to a database: ``text()``, ``literal_column()``, ``DDL()``, ``exec_driver_sql()``,
``execute()``/``executemany()``/``executescript()``/``scalar()``/``scalars()``/``stream()``,
``op()``, ``with_hint()``/``prefix_with()``/``suffix_with()``, and any function of the package
that passes one of its parameters on to one of these (found to a fixed point, e.g. a class
whose ``__init__`` wraps its argument in ``text()``). The SQL argument is flagged when it is
built at run time: an f-string with placeholders, ``%``-formatting, ``+`` concatenation with a
non-constant, ``.format()``, ``str.join``, a string method called on such a value, or a local
variable that was assigned (or ``+=``-extended with) any of these, looked up through the
enclosing scopes. Constant strings, conditional choices between constants and SQLAlchemy
constructs are not flagged.

A few such places are legitimate; each is listed in ``ALLOWED`` with the reason. Any other
occurrence fails ``test_no_sql_is_built_from_strings``; an entry that no longer matches
anything fails ``test_allow_list_has_no_stale_entries`` (so the list stays small).
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "composite_store"

ALL_ARGS = -1
# callee name -> positions of the SQL argument (ALL_ARGS: every positional argument)
SINKS: dict[str, tuple[int, ...]] = {
    "text": (0,),
    "literal_column": (0,),
    "DDL": (0,),
    "TextClause": (0,),
    "exec_driver_sql": (0,),
    "execute": (0,),
    "executemany": (0,),
    "executescript": (0,),
    "scalar": (0,),
    "scalars": (0,),
    "stream": (0,),
    "op": (0,),
    "with_hint": (1,),
    "with_statement_hint": (0,),
    "prefix_with": (ALL_ARGS,),
    "suffix_with": (ALL_ARGS,),
}
SQL_KEYWORDS = ("statement", "sql", "operation", "query", "text")
STRING_METHODS = {
    "replace",
    "strip",
    "lstrip",
    "rstrip",
    "upper",
    "lower",
    "casefold",
    "title",
    "removeprefix",
    "removesuffix",
    "expandtabs",
    "translate",
    "encode",
    "decode",
}

# (file relative to the repository, qualified function name, callee) -> (how many such calls
# that function makes, why they are safe). A further occurrence in the same function fails.
ALLOWED: dict[tuple[str, str, str], tuple[int, str]] = {
    (
        "composite_store/dialects.py",
        "upsert",
        "_Upsert",
    ): (
        2,
        "the ON CONFLICT clause of the cached upsert: column names go through the dialect's "
        "identifier preparer (quote), the SET/WHERE expressions are SQLAlchemy column expressions "
        "compiled with literal_binds (columns, excluded.* and integer literals of this module); "
        "row values are never in it, they are bound parameters of the INSERT",
    ),
    (
        "composite_store/engines.py",
        "_sqlite_engine._on_connect",
        "execute",
    ): (
        1,
        "PRAGMA statements take no bind parameters; the pragmas are constants of this "
        "function and busy_timeout is an int computed from a float option",
    ),
    (
        "composite_store/clickhouse.py",
        "ClickHouseImpl._insert_version",
        "text",
    ): (
        1,
        "the table is Alembic's version table, named alembic_version_<domain> by "
        "composite_store.schema.version_table from the fixed domain list; the version is bound",
    ),
    (
        "composite_store/clickhouse.py",
        "ClickHouseImpl._delete_version",
        "text",
    ): (
        1,
        "as _insert_version: the table name is alembic_version_<domain>; the version is bound",
    ),
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    function: str
    callee: str
    how: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.path, self.function, self.callee)

    def __str__(self) -> str:
        where = f"{self.path}:{self.line} in {self.function or '<module>'}"
        return f"{where}: {self.callee}() gets {self.how}"


@dataclass
class Scope:
    """A function (or the module): its parameters and what each local name is assigned."""

    node: ast.AST
    qualname: str
    parent: Scope | None
    in_class: bool = False  # a method: callers do not pass its first parameter
    params: list[str] = field(default_factory=list)
    assigned: dict[str, list[ast.expr]] = field(default_factory=dict)

    def lookup(self, name: str) -> tuple[Scope, list[ast.expr]] | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.assigned or name in scope.params:
                return scope, scope.assigned.get(name, [])
            scope = scope.parent
        return None


def _own_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of ``node``'s body, not descending into nested functions or classes (lambdas
    belong to the function they are written in)."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        yield child
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            stack.extend(ast.iter_child_nodes(child))


def _collect(scope: Scope) -> None:
    node = scope.node
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        args = node.args
        scope.params = [
            a.arg
            for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg)
            if a is not None
        ]
    for child in _own_nodes(node):
        if isinstance(child, ast.Assign):
            for target in child.targets:
                for name in _names(target):
                    scope.assigned.setdefault(name, []).append(child.value)
        elif isinstance(child, ast.AnnAssign) and child.value is not None:
            for name in _names(child.target):
                scope.assigned.setdefault(name, []).append(child.value)
        elif isinstance(child, ast.AugAssign):
            for name in _names(child.target):
                scope.assigned.setdefault(name, []).append(
                    ast.BinOp(
                        left=ast.Name(id=name, ctx=ast.Load()), op=child.op, right=child.value
                    )
                )
        elif isinstance(child, ast.For | ast.AsyncFor):
            items = (
                child.iter.elts
                if isinstance(child.iter, ast.Tuple | ast.List | ast.Set)
                else [child.iter]
            )
            for name in _names(child.target):
                scope.assigned.setdefault(name, []).extend(items)
        elif isinstance(child, ast.NamedExpr):
            scope.assigned.setdefault(child.target.id, []).append(child.value)


def _names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for elt in target.elts for n in _names(elt)]
    return []


def _is_str(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def built_at_run_time(
    expr: ast.AST, scope: Scope, seen: frozenset[str] = frozenset()
) -> str | None:
    """How ``expr`` builds a string at run time ("an f-string", ...), or None if it does not."""
    if isinstance(expr, ast.JoinedStr):
        return (
            "an f-string" if any(isinstance(v, ast.FormattedValue) for v in expr.values) else None
        )
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Mod):
        if _is_str(expr.left) or built_at_run_time(expr.left, scope, seen):
            return "%-formatting"
        return None
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        inner = built_at_run_time(expr.left, scope, seen) or built_at_run_time(
            expr.right, scope, seen
        )
        if inner:
            return inner
        if _is_str(expr.left) != _is_str(expr.right):  # a constant string + something else
            return "+ concatenation"
        return None
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
        method = expr.func.attr
        if method == "format":
            return ".format()"
        if method == "join" and (
            _is_str(expr.func.value) or built_at_run_time(expr.func.value, scope, seen)
        ):
            return "str.join()"
        if method in STRING_METHODS:
            return built_at_run_time(expr.func.value, scope, seen)
        return None
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "str":
        return next((h for a in expr.args if (h := built_at_run_time(a, scope, seen))), None)
    if isinstance(expr, ast.IfExp):
        return built_at_run_time(expr.body, scope, seen) or built_at_run_time(
            expr.orelse, scope, seen
        )
    if isinstance(expr, ast.Name) and expr.id not in seen:
        found = scope.lookup(expr.id)
        if found is None:
            return None
        owner, values = found
        for value in values:
            how = built_at_run_time(value, owner, seen | {expr.id})
            if how:
                return f"{how} (through the variable {expr.id!r})"
    return None


def parameter_source(expr: ast.AST, scope: Scope) -> str | None:
    """The parameter of the enclosing function that ``expr`` passes on unchanged (or through
    string methods), if any: such a function is itself a way to send SQL text."""
    while isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
        if expr.func.attr not in STRING_METHODS:
            return None
        expr = expr.func.value
    if isinstance(expr, ast.Name):
        found = scope.lookup(expr.id)
        if found is not None and expr.id in found[0].params and not found[1]:
            return expr.id
    return None


def _callee(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _sql_arguments(call: ast.Call, positions: tuple[int, ...]) -> list[ast.expr]:
    found: list[ast.expr] = []
    for position in positions:
        if position == ALL_ARGS:
            found += [a for a in call.args if not isinstance(a, ast.Starred)]
        elif position < len(call.args) and not isinstance(call.args[position], ast.Starred):
            found.append(call.args[position])
    found += [k.value for k in call.keywords if k.arg in SQL_KEYWORDS]
    return found


def _scopes(tree: ast.Module) -> list[Scope]:
    """Every scope of a module: the module, each function (qualified name), each lambda."""
    module = Scope(tree, "", None)
    _collect(module)
    scopes = [module]

    def visit(node: ast.AST, parent: Scope, prefix: str, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                visit(child, parent, f"{prefix}{child.name}.", True)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                scope = Scope(child, f"{prefix}{child.name}", parent, in_class)
                _collect(scope)
                scopes.append(scope)
                visit(child, scope, f"{prefix}{child.name}.", False)
            else:
                visit(child, parent, prefix, in_class)

    visit(tree, module, "", False)
    return scopes


def scan(sources: dict[str, str]) -> list[Finding]:
    """The string-built SQL in ``sources`` (path -> Python source)."""
    parsed = {path: _scopes(ast.parse(text, filename=path)) for path, text in sources.items()}
    sinks = dict(SINKS)
    wrapped_by: dict[str, str] = {}
    changed = True
    while changed:  # functions that pass a parameter on as SQL are sinks too
        changed = False
        for path, scopes in parsed.items():
            for scope in scopes[1:]:
                assert isinstance(scope.node, ast.FunctionDef | ast.AsyncFunctionDef)
                for call in _calls(scope):
                    callee = _callee(call)
                    if callee not in sinks:
                        continue
                    for arg in _sql_arguments(call, sinks[callee]):
                        param = parameter_source(arg, scope)
                        if param is None:
                            continue
                        name, index = _as_sink(scope, param)
                        if name is not None and index not in sinks.get(name, ()):
                            sinks[name] = (*sinks.get(name, ()), index)
                            wrapped_by[name] = f"{path}:{scope.qualname} -> {callee}()"
                            changed = True
    findings = []
    for path, scopes in parsed.items():
        for scope in scopes:
            for call in _calls(scope):
                callee = _callee(call)
                if callee not in sinks:
                    continue
                for arg in _sql_arguments(call, sinks[callee]):
                    how = built_at_run_time(arg, scope)
                    if how:
                        via = (
                            f" (which passes it to {wrapped_by[callee]})"
                            if callee in wrapped_by
                            else ""
                        )
                        findings.append(
                            Finding(path, call.lineno, scope.qualname, callee, how + via)
                        )
    return findings


def _calls(scope: Scope) -> Iterator[ast.Call]:
    for node in _own_nodes(scope.node):
        if isinstance(node, ast.Call):
            yield node


def _as_sink(scope: Scope, param: str) -> tuple[str | None, int]:
    """The name callers use for ``scope``'s function and the position of ``param`` there."""
    node = scope.node
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    positional = [a.arg for a in (*node.args.posonlyargs, *node.args.args)]
    if param not in positional:
        return None, 0
    index = positional.index(param)
    method = scope.in_class
    if method:
        index -= 1  # self/cls
    if method and node.name == "__init__":
        return scope.qualname.split(".")[-2], index  # called as the class
    return node.name, index


def package_sources() -> dict[str, str]:
    root = PACKAGE.parent
    return {
        str(path.relative_to(root)): path.read_text(encoding="utf-8")
        for path in sorted(PACKAGE.rglob("*.py"))
    }


# -- the tests ---------------------------------------------------------------------------------
def not_allowed(
    findings: list[Finding], allowed: dict[tuple[str, str, str], tuple[int, str]]
) -> list[Finding]:
    """The findings no allow-list entry covers (every one of a key seen more often than
    its entry says)."""
    counts = Counter(f.key for f in findings)
    return [f for f in findings if counts[f.key] > allowed.get(f.key, (0, ""))[0]]


def test_no_sql_is_built_from_strings() -> None:
    unlisted = not_allowed(scan(package_sources()), ALLOWED)
    assert not unlisted, (
        "SQL text built from strings (use bound parameters or SQLAlchemy constructs; if it is "
        "truly safe, add it to ALLOWED with the reason):\n" + "\n".join(map(str, unlisted))
    )


def test_allow_list_has_no_stale_entries() -> None:
    found = {f.key for f in scan(package_sources())}
    stale = [key for key in ALLOWED if key not in found]
    assert not stale, f"ALLOWED entries that match nothing any more (remove them): {stale}"


PLANTED = """
from sqlalchemy import text

async def by_fstring(conn, user):
    await conn.execute(text(f"SELECT * FROM t WHERE name = '{user}'"))

async def by_percent(conn, user):
    await conn.exec_driver_sql("DELETE FROM t WHERE id = %s" % user)

async def by_concat(conn, user):
    await conn.execute("SELECT * FROM t WHERE id = " + user)

async def by_format_variable(conn, table):
    sql = "DROP TABLE {}".format(table)
    await conn.execute(text(sql))

async def by_augmented(conn, where):
    sql = "SELECT 1"
    sql += " WHERE " + where
    await conn.execute(text(sql))

async def by_join(cursor, columns):
    cursor.executemany(", ".join(columns), [])

def by_literal_column(name):
    return literal_column(f"{name} + 1")

def by_hint(stmt, table, hint):
    return stmt.with_hint(table, f"USE INDEX ({hint})")

def outer(conn, name):
    def inner():
        return conn.execute(query)
    query = f"SELECT {name}"
    return inner

class Wrapper:
    def __init__(self, clause):
        self.clause = text(clause.replace(":", "\\\\:"))

def via_wrapper(user):
    return Wrapper(f"WHERE id = {user}")

def run_raw(conn, sql):
    return conn.exec_driver_sql(sql)

def via_function(conn, user):
    return run_raw(conn, "SELECT " + user)
"""

CLEAN = """
from sqlalchemy import select, text

async def constants(conn, write, key):
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    await conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
    await conn.execute("SELECT a " "FROM b")
    stmt = select(t).where(t.c.id == key)
    await conn.execute(stmt)
    for pragma in ("journal_mode=WAL", "foreign_keys=ON"):
        await conn.exec_driver_sql("PRAGMA " "x")
    log.info(f"not SQL: {key}")
    message = "value %s" % key
    return message
"""


def test_scanner_catches_planted_examples() -> None:
    """The scanner is not blind: each planted way of building SQL from strings is found."""
    findings = scan({"planted.py": PLANTED})
    by_function = {f.function: f for f in findings}
    expected = {
        "by_fstring": "an f-string",
        "by_percent": "%-formatting",
        "by_concat": "+ concatenation",
        "by_format_variable": ".format()",
        "by_augmented": "+ concatenation",
        "by_join": "str.join()",
        "by_literal_column": "an f-string",
        "by_hint": "an f-string",
        "outer.inner": "an f-string",
        "via_wrapper": "an f-string",
        "via_function": "+ concatenation",
    }
    for function, how in expected.items():
        assert function in by_function, f"planted example {function} not found: {findings}"
        assert by_function[function].how.startswith(how), by_function[function]
    assert "(through the variable 'sql')" in by_function["by_format_variable"].how
    assert "Wrapper.__init__" in by_function["via_wrapper"].how
    assert "run_raw" in by_function["via_function"].how
    assert set(by_function) == set(expected), sorted(set(by_function) - set(expected))


def test_allow_list_covers_only_as_many_calls_as_it_says() -> None:
    """A second string-built statement in an allowed function is not covered by its entry."""
    source = 'def f(conn, a, b):\n    conn.execute(f"{a}")\n    conn.execute(f"{b}")\n'
    findings = scan({"x.py": source})
    assert len(findings) == 2
    assert not_allowed(findings, {("x.py", "f", "execute"): (2, "two, both fine")}) == []
    assert not_allowed(findings, {("x.py", "f", "execute"): (1, "only one")}) == findings


def test_scanner_leaves_constants_and_constructs_alone() -> None:
    """Constant SQL, a choice between constants, SQLAlchemy constructs and strings that never
    reach a database call are not findings."""
    assert scan({"clean.py": CLEAN}) == []


@pytest.mark.parametrize("key", sorted(ALLOWED))
def test_every_allowed_entry_has_a_reason(key: tuple[str, str, str]) -> None:
    count, reason = ALLOWED[key]
    assert count >= 1 and len(reason) > 40, f"give {key} a count and a real reason"

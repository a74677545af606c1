"""The ``--where`` filter language, compiled to a SQL expression with bound parameters.

One expression selects runs by what the registry knows about them::

    best_val_ppl < 12 and config.lr == 1e-3 and tag == 'sweep-1'
    status in ('failed', 'lost') or (experiment == 'lpt' and not tag == 'old')
    val_ppl.min <= 9.5 and s2/val_ppl.last > 3 and note ~ 'diverged'

Grammar (keywords are case-insensitive)::

    expr    := and_expr ('or' and_expr)*
    and_expr:= unary ('and' unary)*
    unary   := 'not' unary | '(' expr ')' | compare
    compare := NAME OP value | NAME ['not'] 'in' '(' value (',' value)* ')'
    OP      := '==' | '=' | '!=' | '<' | '<=' | '>' | '>=' | '~'      ('~': contains, text only)
    value   := NUMBER | 'text' | "text" | true | false | null

Names:

- run fields: ``id``, ``status``, ``experiment``, ``variant``, ``host``, ``gpu``, ``epoch``,
  ``stage``, ``retry_of``, ``error``, ``note``, ``imported`` (true for imported records);
- ``headline``: the value of the experiment's headline summary (``best_val_ppl`` for most);
- ``tag``: a run matches ``tag == 'x'`` when one of its tags is ``x`` (``!=``, ``in``, ``~`` too);
- ``config.KEY`` (``config.a.b`` for nested values): a field of the run's validated config;
- any other name is a metric of the run: ``val_ppl`` (its last value), ``val_ppl.min``,
  ``val_ppl.max``, ``val_ppl.last``; ``s2/val_ppl`` reads stage 2. A run without that metric
  does not match.

Every value reaches the database as a bound parameter, never as SQL text: a value cannot change
the query's structure. A comparison with ``null`` is ``IS NULL`` / ``IS NOT NULL``. Mistakes raise
:class:`FilterError` with the column where the expression went wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, String, and_, cast, exists, false, literal, not_, or_, select, true, type_coerce
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from core.errors import UserError
from core.registry.models import LatestMetric, Run, RunStatus, RunTag

RUN = Run.__table__
TAG = RunTag.__table__
LATEST = LatestMetric.__table__

MAX_LENGTH = 4000
RUN_FIELDS = {
    "id": RUN.c.id, "status": RUN.c.status, "experiment": RUN.c.experiment, "variant": RUN.c.variant,
    "host": RUN.c.host, "gpu": RUN.c.gpu, "epoch": RUN.c.epoch, "stage": RUN.c.stage,
    "retry_of": RUN.c.retry_of, "error": RUN.c.error, "note": RUN.c.note, "headline": RUN.c.headline_value,
}
TEXT_FIELDS = {"status", "experiment", "variant", "host", "gpu", "error", "note"}
METRIC_STATS = {"last", "min", "max"}
COMPARE_OPS = {"==", "!=", "<", "<=", ">", ">=", "~"}
STATUSES = {s.value for s in RunStatus}


class FilterError(UserError, ValueError):
    """A malformed filter: ``message`` says what and ``position`` (0-based) where. Usage error (exit 2)."""

    def __init__(self, message: str, position: int, text: str = "") -> None:
        self.position = position
        self.text = text
        super().__init__(f"--where: {message} at column {position + 1}", 2)


# --- lexer ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Token:
    kind: str  # name, number, string, op, lparen, rparen, comma, end
    value: Any
    pos: int


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:[./][A-Za-z0-9_]+)*)
  | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<op>==|!=|<=|>=|<|>|=|~)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
""", re.VERBOSE)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            if text[pos] in "'\"":
                raise FilterError("unterminated string", pos, text)
            raise FilterError(f"unexpected character {text[pos]!r}", pos, text)
        kind = match.lastgroup
        raw = match.group()
        if kind == "number":
            tokens.append(Token("number", float(raw) if any(c in raw for c in ".eE") else int(raw), pos))
        elif kind == "string":
            tokens.append(Token("string", re.sub(r"\\(.)", r"\1", raw[1:-1]), pos))
        elif kind == "op":
            tokens.append(Token("op", "==" if raw == "=" else raw, pos))
        elif kind != "space":
            tokens.append(Token(kind, raw, pos))
        pos = match.end()
    tokens.append(Token("end", None, len(text)))
    return tokens


# --- parser: tokens → a small tree --------------------------------------------------------------

@dataclass(frozen=True)
class Compare:
    name: str
    op: str  # one of COMPARE_OPS, "in", "not in"
    value: Any  # a scalar, or a tuple for in / not in
    pos: int


@dataclass(frozen=True)
class BoolOp:
    op: str  # and, or, not
    args: tuple


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def error(self, message: str, tok: Token | None = None) -> FilterError:
        tok = tok or self.tok
        return FilterError(message, tok.pos, self.text)

    def keyword(self, word: str) -> bool:
        tok = self.tok
        if tok.kind == "name" and tok.value.lower() == word:
            self.i += 1
            return True
        return False

    def parse(self):
        if self.tok.kind == "end":
            raise self.error("empty filter")
        node = self.expr()
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self._describe(self.tok)} (expected 'and', 'or' or the end)")
        return node

    def expr(self):
        args = [self.and_expr()]
        while self.keyword("or"):
            args.append(self.and_expr())
        return args[0] if len(args) == 1 else BoolOp("or", tuple(args))

    def and_expr(self):
        args = [self.unary()]
        while self.keyword("and"):
            args.append(self.unary())
        return args[0] if len(args) == 1 else BoolOp("and", tuple(args))

    def unary(self):
        if self.keyword("not"):
            return BoolOp("not", (self.unary(),))
        if self.tok.kind == "lparen":
            self.i += 1
            node = self.expr()
            if self.tok.kind != "rparen":
                raise self.error(f"expected ')' but found {self._describe(self.tok)}")
            self.i += 1
            return node
        return self.compare()

    def compare(self) -> Compare:
        name_tok = self.tok
        if name_tok.kind != "name" or name_tok.value.lower() in ("and", "or", "not", "in"):
            raise self.error(f"expected a field name but found {self._describe(name_tok)}")
        self.i += 1
        op_tok = self.tok
        if self.keyword("not"):
            if not self.keyword("in"):
                raise self.error("expected 'in' after 'not'")
            return Compare(name_tok.value, "not in", self.value_list(), name_tok.pos)
        if self.keyword("in"):
            return Compare(name_tok.value, "in", self.value_list(), name_tok.pos)
        if op_tok.kind != "op":
            raise self.error(f"expected an operator (==, !=, <, <=, >, >=, ~, in) after {name_tok.value!r} "
                             f"but found {self._describe(op_tok)}")
        self.i += 1
        return Compare(name_tok.value, op_tok.value, self.value(), name_tok.pos)

    def value_list(self) -> tuple:
        if self.tok.kind != "lparen":
            raise self.error("expected '(' to open the list of values")
        self.i += 1
        values = [self.value()]
        while self.tok.kind == "comma":
            self.i += 1
            values.append(self.value())
        if self.tok.kind != "rparen":
            raise self.error(f"expected ',' or ')' but found {self._describe(self.tok)}")
        self.i += 1
        return tuple(values)

    def value(self) -> Any:
        tok = self.tok
        if tok.kind in ("number", "string"):
            self.i += 1
            return tok.value
        if tok.kind == "name" and tok.value.lower() in ("true", "false", "null"):
            self.i += 1
            return {"true": True, "false": False, "null": None}[tok.value.lower()]
        if tok.kind == "name":
            raise self.error(f"expected a value but found the name {tok.value!r} (quote text: '{tok.value}')")
        raise self.error(f"expected a value but found {self._describe(tok)}")

    @staticmethod
    def _describe(tok: Token) -> str:
        if tok.kind == "end":
            return "the end of the filter"
        if tok.kind == "string":
            return f"the text {tok.value!r}"
        return repr(str(tok.value))


def parse(text: str):
    """Parse a filter into a tree of :class:`Compare` and :class:`BoolOp` (FilterError when malformed)."""
    if len(text) > MAX_LENGTH:
        raise FilterError(f"the filter is longer than {MAX_LENGTH} characters", MAX_LENGTH, text)
    return _Parser(text).parse()


# --- compiler: tree → SQLAlchemy expression ---------------------------------------------------

def compile_filter(text: str, dialect: str = "sqlite") -> ColumnElement[bool]:
    """A boolean SQL expression over the ``run`` table; ``dialect`` is the engine's (sqlite, postgresql)."""
    return _Compiler(text, dialect).build(parse(text))


def validate(text: str) -> None:
    """Raise :class:`FilterError` unless ``text`` is a well-formed filter (a front end's early check)."""
    compile_filter(text)


class _Compiler:
    def __init__(self, text: str, dialect: str) -> None:
        self.text = text
        self.dialect = dialect

    def error(self, message: str, node: Compare) -> FilterError:
        return FilterError(message, node.pos, self.text)

    def build(self, node) -> ColumnElement[bool]:
        if isinstance(node, BoolOp):
            parts = [self.build(a) for a in node.args]
            if node.op == "not":
                return not_(parts[0])
            return and_(*parts) if node.op == "and" else or_(*parts)
        return self.compare(node)

    def compare(self, node: Compare) -> ColumnElement[bool]:
        name = node.name
        lower = name.lower()
        if lower == "tag" or lower == "tags":
            return self.tag(node)
        if lower == "imported":
            if node.op not in ("==", "!=") or not isinstance(node.value, bool):
                raise self.error("imported is compared with true or false (== or !=)", node)
            is_imported = RUN.c.imported_from.is_not(None)
            return is_imported if node.value == (node.op == "==") else not_(is_imported)
        if lower.startswith("config."):
            return self.config(node, name.split(".")[1:])
        if lower in RUN_FIELDS:
            return self.field(node, lower)
        return self.metric(node)

    # run columns
    def field(self, node: Compare, name: str) -> ColumnElement[bool]:
        column = RUN_FIELDS[name]
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        for value in values:
            if isinstance(value, bool):
                raise self.error(f"{name} is not true/false: compare it with a {'text' if name in TEXT_FIELDS else 'number'}", node)
            if value is None:
                continue
            if name in TEXT_FIELDS and not isinstance(value, str):
                raise self.error(f"{name} is text: quote the value ('{value}')", node)
            if name not in TEXT_FIELDS and isinstance(value, str):
                raise self.error(f"{name} is a number, not text ({value!r})", node)
            if name == "status" and value not in STATUSES and node.op != "~":
                raise self.error(f"unknown status {value!r} (one of {', '.join(s.value for s in RunStatus)})", node)
        clause = self.apply(node, column, text=name in TEXT_FIELDS)
        if node.op == "!=" and node.value is not None and column.nullable:
            clause = or_(clause, column.is_(None))  # a run without a note is one whose note is not 'x'
        return clause

    # tags: an EXISTS over runtag
    def tag(self, node: Compare) -> ColumnElement[bool]:
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        if any(not isinstance(v, str) for v in values):
            raise self.error("tag is compared with quoted text", node)
        owned = select(TAG.c.run_id).where(TAG.c.run_id == RUN.c.id)
        if node.op in ("==", "!="):
            has = exists(owned.where(TAG.c.tag == node.value))
            return has if node.op == "==" else not_(has)
        if node.op in ("in", "not in"):
            has = exists(owned.where(TAG.c.tag.in_(values)))
            return has if node.op == "in" else not_(has)
        if node.op == "~":
            return exists(owned.where(TAG.c.tag.contains(node.value, autoescape=True)))
        raise self.error(f"tag supports ==, !=, in, not in and ~ (not {node.op})", node)

    # config fields: JSON extraction with the value's own type
    def config(self, node: Compare, path: list[str]) -> ColumnElement[bool]:
        if not path or any(not p for p in path):
            raise self.error("config needs a key: config.lr", node)
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) > 1 and not kinds <= {int, float}:
            raise self.error("a list mixes text and numbers", node)
        if self.dialect == "postgresql":
            doc = cast(RUN.c.config_json, postgresql.JSONB)[tuple(path) if len(path) > 1 else path[0]]
        else:
            doc = type_coerce(RUN.c.config_json, JSON)[tuple(path) if len(path) > 1 else path[0]]
        kind = kinds.pop() if kinds else None
        if kind is bool:
            if self.dialect == "postgresql":
                expr = doc.as_string()
                node = Compare(node.name, node.op, _map(node.value, lambda v: json.dumps(v)), node.pos)
                return self.apply(node, expr, text=True)
            return self.apply(node, doc.as_boolean(), text=False)
        if kind is str:
            return self.apply(node, doc.as_string(), text=True)
        if kind is None:  # null: the key is absent or null
            return self.apply(node, doc.as_string(), text=True)
        return self.apply(node, doc.as_float(), text=False)

    # metrics: a scalar subquery over latestmetric
    def metric(self, node: Compare) -> ColumnElement[bool]:
        name = node.name
        stage = 0
        match = re.fullmatch(r"s(\d+)/(.+)", name)
        if match:
            stage, name = int(match.group(1)), match.group(2)
        if "/" in name:
            raise self.error(f"unknown name {node.name!r} (a stage metric reads s2/val_ppl)", node)
        key, _, stat = name.partition(".")
        stat = stat or "last"
        if stat not in METRIC_STATS:
            raise self.error(f"unknown name {node.name!r}: a metric takes .last, .min or .max "
                             f"(fields: {', '.join(sorted(RUN_FIELDS))}, tag, config.KEY)", node)
        values = node.value if isinstance(node.value, tuple) else (node.value,)
        if any(isinstance(v, (str, bool)) for v in values):
            raise self.error(f"{node.name} is a metric: compare it with a number", node)
        if node.op == "~":
            raise self.error("~ (contains) applies to text, not to a metric", node)
        column = getattr(LATEST.c, stat)
        value = (select(column)
                 .where(LATEST.c.run_id == RUN.c.id, LATEST.c.stage == stage, LATEST.c.key == key)
                 .scalar_subquery())
        return self.apply(node, value, text=False)

    def apply(self, node: Compare, column, *, text: bool) -> ColumnElement[bool]:
        op, value = node.op, node.value
        if op in ("in", "not in"):
            present = [v for v in value if v is not None]
            parts = [column.in_(present)] if present else []
            if len(present) != len(value):
                parts.append(column.is_(None))
            clause = or_(*parts) if len(parts) > 1 else parts[0]
            return clause if op == "in" else not_(clause)
        if value is None:
            if op == "==":
                return column.is_(None)
            if op == "!=":
                return column.is_not(None)
            raise self.error(f"null can only be compared with == or != (not {op})", node)
        if op == "~":
            if not text or not isinstance(value, str):
                raise self.error("~ (contains) compares text with quoted text", node)
            return column.contains(value, autoescape=True)
        if isinstance(value, bool) and not text:
            value = true() if value else false()
            return column == value if op == "==" else column != value if op == "!=" else _bad_bool(self, node)
        bound = literal(value, String) if text else literal(value)
        return {
            "==": column == bound, "!=": column != bound, "<": column < bound, "<=": column <= bound,
            ">": column > bound, ">=": column >= bound,
        }[op]


def _bad_bool(compiler: _Compiler, node: Compare):
    raise compiler.error(f"true/false compare with == or != (not {node.op})", node)


def _map(value, fn):
    return tuple(fn(v) for v in value) if isinstance(value, tuple) else fn(value)

"""Safe, vectorized expressions for ``derive`` columns and branch filters.

Pipeline files contain user-written text such as ``"quantity * unit_price"`` or
``"status == 'cancelled'"``. That text is never handed to ``eval``/``exec``: it is
parsed with ``ast.parse(mode="eval")`` and only an allow-list of node types (column
names, literals, arithmetic, comparisons, boolean logic, ``a if c else b`` and a
fixed table of functions) is compiled; anything else is an ``ExpressionError``
naming the construct. Compilation happens once and yields a tree of small closures,
each calling ``pyarrow.compute`` kernels, so evaluation handles a whole
``RecordBatch`` at a time with no per-row Python. Nulls propagate as in SQL;
integer overflow and division by zero are errors, never silent.
"""

from __future__ import annotations

import ast
from functools import reduce
from typing import Any, Callable, Iterable, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc


class ExpressionError(ValueError):
    """A one-line, user-facing explanation of a bad expression or a failed evaluation."""


class _Node(NamedTuple):
    run: Callable  # RecordBatch -> pa.Array | pa.Scalar
    desc: str  # how to name this operand in error messages, e.g. "column 'qty'"


def _is_str(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _to_str(v):
    return v if _is_str(v.type) else pc.cast(v, pa.string())


def _add(a, b):  # string + string concatenates
    types = (a.type, b.type)
    if any(map(_is_str, types)) and all(_is_str(t) or pa.types.is_null(t) for t in types):
        return pc.binary_join_element_wise(_to_str(a), _to_str(b), "")
    return pc.add_checked(a, b)


def _true_div(a, b):
    if pa.types.is_integer(a.type) and pa.types.is_integer(b.type):
        a, b = pc.cast(a, pa.float64()), pc.cast(b, pa.float64())
    return pc.divide_checked(a, b)


def _floor_div(a, b):
    if not (pa.types.is_integer(a.type) and pa.types.is_integer(b.type)):
        return pc.floor(pc.divide_checked(a, b))
    q = pc.divide_checked(a, b)  # truncates toward zero; step down where the signs differ
    r = pc.subtract_checked(a, pc.multiply_checked(q, b))
    fix = pc.and_(pc.not_equal(r, 0), pc.not_equal(pc.less(r, 0), pc.less(b, 0)))
    return pc.subtract_checked(q, pc.cast(fix, q.type))


def _mod(a, b):  # like Python: the result takes the divisor's sign
    return pc.subtract_checked(a, pc.multiply_checked(_floor_div(a, b), b))


_OPS = {ast.Add: ("+", _add), ast.Sub: ("-", pc.subtract_checked),
        ast.Mult: ("*", pc.multiply_checked), ast.Div: ("/", _true_div),
        ast.FloorDiv: ("//", _floor_div), ast.Mod: ("%", _mod),
        ast.USub: ("-", pc.negate_checked), ast.Not: ("not", pc.invert),
        ast.And: ("and", lambda *vs: reduce(pc.and_kleene, vs)),
        ast.Or: ("or", lambda *vs: reduce(pc.or_kleene, vs))}
_ARITH = {"+", "-", "*", "/", "//", "%"}
_CMP = {ast.Eq: ("==", pc.equal), ast.NotEq: ("!=", pc.not_equal), ast.Lt: ("<", pc.less),
        ast.LtE: ("<=", pc.less_equal), ast.Gt: (">", pc.greater),
        ast.GtE: (">=", pc.greater_equal)}
_FUNCS = {  # name -> (min args, max args or None, implementation on evaluated args)
    "upper": (1, 1, pc.utf8_upper), "lower": (1, 1, pc.utf8_lower),
    "trim": (1, 1, pc.utf8_trim_whitespace),
    "length": (1, 1, lambda v: pc.cast(pc.utf8_length(v), pa.int64())),
    "concat": (1, None, lambda *vs: pc.binary_join_element_wise(*map(_to_str, vs), "")),
    "coalesce": (1, None, pc.coalesce), "abs": (1, 1, pc.abs_checked),
    "is_null": (1, 1, pc.is_null), "if_else": (3, 3, pc.if_else),
    "year": (1, 1, pc.year), "month": (1, 1, pc.month), "day": (1, 1, pc.day),
    "to_string": (1, 1, lambda v: pc.cast(v, pa.string())),
    "to_int": (1, 1, lambda v: pc.cast(v, pa.int64())),
    "to_float": (1, 1, lambda v: pc.cast(v, pa.float64())),
}
_FORBIDDEN = {ast.Attribute: "attribute access", ast.Subscript: "subscripts", ast.Lambda: "lambda",
              ast.Starred: "starred arguments", ast.JoinedStr: "f-strings",
              ast.NamedExpr: "assignment expressions (:=)", ast.List: "lists outside 'in'",
              ast.Tuple: "tuples outside 'in'", ast.ListComp: "comprehensions",
              ast.SetComp: "comprehensions", ast.DictComp: "comprehensions",
              ast.GeneratorExp: "comprehensions"}  # anything else is refused by its class name


def _apply(op: str, impl: Callable, nodes: list[_Node], src: str) -> Callable:
    """A closure evaluating ``nodes`` and passing the results to ``impl``, with friendly errors."""
    def run(batch):
        vals = [n.run(batch) for n in nodes]
        try:
            return impl(*vals)
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
            parts = [(f"{v.type} {n.desc}", v.type) for n, v in zip(nodes, vals, strict=False)]
            bad = [p for p, t in parts if not (pa.types.is_integer(t) or pa.types.is_floating(t))]
            bad = bad if op in _ARITH and bad else [p for p, _ in parts]
            hint = "(cast it first)" if len(bad) == 1 else "(cast first)"
            raise ExpressionError(f"cannot apply '{op}' to {' and '.join(bad)} {hint}") from None
        except pa.ArrowException as e:
            msg = (str(e).splitlines() or ["error"])[0]
            if "overflow" in msg:
                raise ExpressionError(f"integer overflow in '{src}'") from None
            if "divide by zero" in msg:
                raise ExpressionError(f"division by zero in '{src}'") from None
            raise ExpressionError(f"cannot evaluate '{src}': {msg}") from None
    return run


_LITERAL_TYPES = (type(None), bool, int, float, str)  # not bytes, complex or Ellipsis


def _literal(node: ast.AST):
    """The Python value of a literal (a leading minus allowed), else ExpressionError."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        if type(value := _literal(node.operand)) in (int, float):
            return -value
    elif isinstance(node, ast.Constant) and type(node.value) in _LITERAL_TYPES:
        return node.value
    raise ExpressionError(f"expected a literal value, got '{ast.unparse(node)}'")


class _Compiler:
    """Turns an allow-listed AST into _Nodes and records the column names it meets."""

    def __init__(self) -> None:
        self.columns: set[str] = set()
        self.handlers: dict[type[ast.AST], Callable[[Any], Any]] = {
            ast.Name: self._name, ast.Constant: self._constant,
            ast.UnaryOp: lambda n: self._operator(n, [n.operand]),
            ast.BinOp: lambda n: self._operator(n, [n.left, n.right]),
            ast.BoolOp: lambda n: self._operator(n, n.values),
            ast.IfExp: self._if, ast.Compare: self._compare, ast.Call: self._call}

    def compile(self, node: ast.AST) -> _Node:
        handler = self.handlers.get(type(node))
        if handler is None:
            what = _FORBIDDEN.get(type(node), f"'{type(node).__name__}' syntax")
            raise ExpressionError(f"{what} not allowed in expressions (in '{ast.unparse(node)}')")
        built = handler(node)  # a finished _Node, or (op, implementation, operand nodes)
        if isinstance(built, _Node):
            return built
        src = ast.unparse(node)
        op, impl, operands = built
        return _Node(_apply(op, impl, operands, src), f"expression '{src}'")

    def _column(self, name: str) -> _Node:
        self.columns.add(name)
        return _Node(lambda batch: batch.column(name), f"column {name!r}")

    def _name(self, node):  # a bare identifier is a column reference
        return self._column(node.id)

    def _constant(self, node):
        try:
            scalar = pa.scalar(_literal(node))
        except (OverflowError, pa.ArrowException):
            raise ExpressionError(f"literal {ast.unparse(node)} is out of range") from None
        return _Node(lambda batch: scalar, f"literal {ast.unparse(node)}")

    def _operator(self, node, operands):
        if type(node.op) not in _OPS:
            raise ExpressionError(f"operator not allowed in '{ast.unparse(node)}' "
                                  "(only + - * / // % and or not)")
        return (*_OPS[type(node.op)], [self.compile(n) for n in operands])

    def _if(self, node):
        return "if/else", pc.if_else, [self.compile(node.test), self.compile(node.body),
                                       self.compile(node.orelse)]

    def _compare(self, node):
        ops, right, src = node.ops, node.comparators, ast.unparse(node)
        if any(isinstance(o, (ast.In, ast.NotIn)) for o in ops):
            return self._in(node, src)
        if any(type(o) not in _CMP for o in ops):
            raise ExpressionError(f"'is' comparisons not allowed, use is_null(x) (in '{src}')")
        args = [self.compile(n) for n in [node.left, *right]]
        pairs = []  # a < b < c  means  (a < b) and (b < c)
        for i, o in enumerate(ops):
            op, kernel = _CMP[type(o)]
            pairs.append(_Node(_apply(op, kernel, args[i:i + 2], src), f"expression '{src}'"))
        return pairs[0] if len(pairs) == 1 else (*_OPS[ast.And], pairs)

    def _in(self, node, src):
        listed = node.comparators[0]
        if len(node.ops) != 1 or not isinstance(listed, (ast.Tuple, ast.List)):
            raise ExpressionError(f"'in' needs one tuple/list of literals, e.g. x in ('a', 'b') "
                                  f"(in '{src}')")
        try:
            values = pa.array([_literal(e) for e in listed.elts])
        except (pa.ArrowException, OverflowError):
            raise ExpressionError(f"mixed or out-of-range values in '{src}'") from None
        negate = isinstance(node.ops[0], ast.NotIn)

        def is_in(v, value_set):  # SQL semantics: a null value gives null, not False
            if pa.types.is_null(value_set.type):  # "x in ()"
                value_set = value_set.cast(v.type)
            hit = pc.is_in(v, value_set=value_set)
            return pc.if_else(pc.is_null(v), None, pc.invert(hit) if negate else hit)
        value_node = _Node(lambda batch: values, f"list {ast.unparse(listed)}")
        return ("not in" if negate else "in"), is_in, [self.compile(node.left), value_node]

    def _call(self, node):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        args, kw, src = node.args, {k.arg: k.value for k in node.keywords}, ast.unparse(node)
        if name is None:
            raise ExpressionError(f"only calls to built-in functions are allowed (in '{src}')")
        if name == "col":
            if len(args) != 1 or kw or not isinstance(getattr(args[0], "value", None), str):
                raise ExpressionError(f"col() takes one string literal, e.g. col(\"unit price\") "
                                      f"(in '{src}')")
            return self._column(args[0].value)
        if name == "round":
            if set(kw) - {"ndigits"} or not args or len(args) + len(kw) > 2:
                raise ExpressionError(f"round takes (x, ndigits=0) (in '{src}')")
            nd = _literal(kw.get("ndigits", args[1] if len(args) > 1 else ast.Constant(0)))
            if type(nd) is not int:
                raise ExpressionError(f"round: ndigits must be an integer literal (in '{src}')")
            return name, lambda v: pc.round(v, nd), [self.compile(args[0])]
        if name not in _FUNCS:
            raise ExpressionError(f"unknown function '{name}' (allowed: "
                                  f"{', '.join(sorted([*_FUNCS, 'round', 'col']))})")
        lo, hi, impl = _FUNCS[name]
        if kw:
            raise ExpressionError(f"{name}() takes no keyword arguments (in '{src}')")
        if len(args) < lo or (hi is not None and len(args) > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}"
            raise ExpressionError(f"{name}() takes {want} argument(s), got {len(args)} "
                                  f"(in '{src}')")
        return name, impl, [self.compile(a) for a in args]


class Expression:
    """A compiled expression; evaluate it on any number of record batches."""

    def __init__(self, text: str, root: _Node, columns: frozenset[str]):
        self.text, self._root, self.columns = text, root, columns

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def check(self, columns: Iterable[str]) -> None:
        """Raise ExpressionError if the expression uses a column that is not in ``columns``."""
        available = list(columns)
        unknown = sorted(self.columns - set(available))
        if unknown:
            raise ExpressionError(
                f"unknown column{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))} in expression {self.text!r}; "
                f"available: {', '.join(available) or '(none)'}")

    def evaluate(self, batch: pa.RecordBatch) -> pa.Array:
        """Evaluate over the whole batch; scalar results are broadcast to ``batch.num_rows``."""
        self.check(batch.schema.names)
        result = self._root.run(batch)
        if isinstance(result, pa.Scalar):  # e.g. "1 + 2" or "lower('A')"
            return pa.repeat(result, batch.num_rows)
        return result.combine_chunks() if isinstance(result, pa.ChunkedArray) else result


def compile_expression(text: str) -> Expression:
    """Parse and compile ``text``; ExpressionError for bad syntax or disallowed constructs."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("expression is empty")
    body = text.strip()  # leading blanks would be an IndentationError
    try:
        tree = ast.parse(body, mode="eval")
    except SyntaxError as e:
        line, offset = e.lineno or 1, e.offset or 0
        if line > 1:
            where = f"line {line}, column {offset}"
        elif 0 < offset <= len(body):
            where = f"column {offset + len(text) - len(text.lstrip())}"  # 1-based, in ``text``
        else:
            where = "end of expression"
        raise ExpressionError(f"syntax error in {text!r} at {where}: {e.msg}") from None
    except (ValueError, MemoryError, RecursionError) as e:  # e.g. NUL bytes, absurd nesting
        raise ExpressionError(f"cannot parse expression {text!r}: {e}") from None
    compiler = _Compiler()
    try:
        root = compiler.compile(tree.body)
    except RecursionError:
        raise ExpressionError(f"expression {text!r} is too deeply nested") from None
    return Expression(text, root, frozenset(compiler.columns))

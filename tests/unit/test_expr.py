import datetime as dt

import pyarrow as pa
import pytest

from etlconsole.engine.expr import Expression, ExpressionError, compile_expression


@pytest.fixture
def batch():
    return pa.record_batch({
        "quantity": pa.array([2, 3, None, -7], pa.int64()),
        "unit_price": pa.array([1.5, None, 2.0, 0.5], pa.float64()),
        "status": pa.array(["open", "cancelled", None, "shipped"]),
        "name": pa.array([" Ann ", "bob", None, "Cy"]),
        "unit price": pa.array([10, 20, 30, 40], pa.int64()),
        "flag": pa.array([True, False, None, True]),
        "qty_text": pa.array(["1", "2", None, "40"]),
        "day": pa.array([dt.date(2024, 1, 31), dt.date(2023, 12, 1), None, dt.date(2020, 2, 29)]),
    })


def ev(text, batch):
    result = compile_expression(text).evaluate(batch)
    assert isinstance(result, pa.Array) and len(result) == batch.num_rows
    return result.to_pylist()


# --- arithmetic ------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("quantity * unit_price", [3.0, None, None, -3.5]),
    ("quantity + 1", [3, 4, None, -6]),
    ("quantity - 10", [-8, -7, None, -17]),
    ("-quantity", [-2, -3, None, 7]),
    ("quantity / 2", [1.0, 1.5, None, -3.5]),
    ("quantity // 2", [1, 1, None, -4]),   # floors like Python, not truncation
    ("quantity % 2", [0, 1, None, 1]),
    ("quantity % -2", [0, -1, None, -1]),
    ("unit_price // 1", [1.0, None, 2.0, 0.0]),
    ("-unit_price // 1", [-2.0, None, -2.0, -1.0]),
    ("unit_price % 1", [0.5, None, 0.0, 0.5]),
    ("(quantity + 1) * 2", [6, 8, None, -12]),
    ("1 + 2", [3, 3, 3, 3]),               # scalar broadcast
])
def test_arithmetic(batch, text, expected):
    assert ev(text, batch) == expected


def test_integer_types_preserved_and_division_is_float(batch):
    expr = compile_expression("quantity * 2")
    assert expr.evaluate(batch).type == pa.int64()
    assert compile_expression("quantity / 1").evaluate(batch).type == pa.float64()
    assert compile_expression("quantity * 1.5").evaluate(batch).type == pa.float64()


def test_integer_overflow_is_an_error():
    big = pa.record_batch({"x": pa.array([2 ** 62, 1], pa.int64())})
    with pytest.raises(ExpressionError, match="overflow"):
        compile_expression("x * 4").evaluate(big)
    with pytest.raises(ExpressionError, match="overflow"):
        compile_expression("x + 9223372036854775807").evaluate(big)


def test_division_by_zero_is_an_error(batch):
    with pytest.raises(ExpressionError, match="division by zero"):
        compile_expression("quantity / 0").evaluate(batch)


def test_type_error_names_the_column():
    b = pa.record_batch({"quantity": pa.array(["2"]), "unit_price": pa.array([1.0])})
    with pytest.raises(ExpressionError) as err:
        compile_expression("quantity * unit_price").evaluate(b)
    assert str(err.value) == "cannot apply '*' to string column 'quantity' (cast it first)"
    assert compile_expression("to_int(quantity) * unit_price").evaluate(b).to_pylist() == [2.0]


# --- strings ---------------------------------------------------------------------------

def test_string_concat(batch):
    assert ev("status + '!'", batch) == ["open!", "cancelled!", None, "shipped!"]
    assert ev("status + name", batch) == ["open Ann ", "cancelledbob", None, "shippedCy"]
    assert ev("concat(status, '-', quantity)", batch) == ["open-2", "cancelled-3", None,
                                                         "shipped--7"]


@pytest.mark.parametrize("text, expected", [
    ("upper(status)", ["OPEN", "CANCELLED", None, "SHIPPED"]),
    ("lower('AbC')", ["abc"] * 4),
    ("trim(name)", ["Ann", "bob", None, "Cy"]),
    ("length(trim(name))", [3, 3, None, 2]),
    ("abs(quantity)", [2, 3, None, 7]),
    ("round(unit_price)", [2.0, None, 2.0, 0.0]),  # half to even, like Python
    ("round(unit_price * 1.234, ndigits=2)", [1.85, None, 2.47, 0.62]),
    ("round(unit_price * 1.234, 1)", [1.9, None, 2.5, 0.6]),
    ("is_null(status)", [False, False, True, False]),
    ("coalesce(quantity, 0)", [2, 3, 0, -7]),
    ("coalesce(unit_price, quantity, 0.0)", [1.5, 3.0, 2.0, 0.5]),
    ("year(day)", [2024, 2023, None, 2020]),
    ("month(day)", [1, 12, None, 2]),
    ("day(day)", [31, 1, None, 29]),     # function names and column names don't collide
    ("to_string(quantity)", ["2", "3", None, "-7"]),
    ("to_int(qty_text) + 1", [2, 3, None, 41]),
    ("to_float(quantity)", [2.0, 3.0, None, -7.0]),
])
def test_functions(batch, text, expected):
    assert ev(text, batch) == expected


def test_col_for_non_identifier_names(batch):
    expr = compile_expression('col("unit price") * quantity')
    assert expr.columns == frozenset({"unit price", "quantity"})
    assert expr.evaluate(batch).to_pylist() == [20, 60, None, -280]


# --- comparisons and boolean logic -------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("status == 'cancelled'", [False, True, None, False]),
    ("status != 'cancelled'", [True, False, None, True]),
    ("quantity > 2", [False, True, None, False]),
    ("quantity <= 2", [True, False, None, True]),
    ("unit_price >= 1.5", [True, None, True, False]),
    ("0 < quantity < 3", [True, False, None, False]),
    ("status in ('open', 'shipped')", [True, False, None, True]),
    ("status not in ['open', 'shipped']", [False, True, None, False]),
    ("quantity in (2, -7)", [True, False, None, True]),
    ("flag and quantity > 0", [True, False, None, False]),
    ("flag or quantity > 0", [True, True, None, True]),
    ("is_null(status) or flag", [True, False, True, True]),  # Kleene: null or true -> true
    ("not flag", [False, True, None, False]),
    ("quantity > 0 and status != 'cancelled' and unit_price > 1", [True, False, None, False]),
])
def test_comparisons_and_logic(batch, text, expected):
    result = compile_expression(text).evaluate(batch)
    assert result.type == pa.bool_()
    assert result.to_pylist() == expected


def test_in_list_edge_cases(batch):
    assert ev("status in ()", batch) == [False, False, None, False]
    assert ev("unit_price in (1.5, 2)", batch) == [True, None, True, False]
    with pytest.raises(ExpressionError, match="cannot apply 'in' to int64 column 'quantity'"):
        compile_expression("quantity in ('a', 'b')").evaluate(batch)
    with pytest.raises(ExpressionError, match="mixed"):
        compile_expression("quantity in ('a', 1)")


def test_other_evaluation_errors_are_expression_errors(batch):
    with pytest.raises(ExpressionError, match="cannot apply 'upper' to int64 column 'quantity'"):
        compile_expression("upper(quantity)").evaluate(batch)
    with pytest.raises(ExpressionError, match="cannot apply '<' to string column 'status'"):
        compile_expression("status < 1").evaluate(batch)
    with pytest.raises(ExpressionError, match="to_int"):
        compile_expression("to_int(status)").evaluate(batch)


def test_conditionals(batch):
    assert ev("'big' if quantity > 2 else 'small'", batch) == ["small", "big", None, "small"]
    assert ev("if_else(flag, quantity, 0)", batch) == [2, 0, None, -7]
    assert ev("unit_price if unit_price > 1 else None", batch) == [1.5, None, 2.0, None]


def test_literals(batch):
    assert ev("True", batch) == [True] * 4
    assert ev("None", batch) == [None] * 4
    assert ev("-1.5", batch) == [-1.5] * 4
    assert ev("'x'", batch) == ["x"] * 4


# --- columns / check -------------------------------------------------------------------

def test_columns_and_check(batch):
    expr = compile_expression("upper(status) + to_string(quantity) if flag else 'x'")
    assert isinstance(expr, Expression)
    assert expr.text == "upper(status) + to_string(quantity) if flag else 'x'"
    assert expr.columns == frozenset({"status", "quantity", "flag"})
    expr.check(["status", "quantity", "flag", "other"])
    with pytest.raises(ExpressionError) as err:
        expr.check(["status", "qty"])
    msg = str(err.value)
    assert "'quantity'" in msg and "'flag'" in msg and "available: status, qty" in msg
    assert "\n" not in msg


def test_evaluate_checks_columns(batch):
    with pytest.raises(ExpressionError, match="unknown column 'nope'"):
        compile_expression("nope + 1").evaluate(batch)


# --- refusals --------------------------------------------------------------------------

@pytest.mark.parametrize("text, fragment", [
    ("__import__('os').system('x')", "built-in functions"),
    ("__import__('os')", "unknown function '__import__'"),
    ("().__class__", "attribute access"),
    ("open('f')", "unknown function 'open'"),
    ("[x for x in y]", "comprehensions"),
    ("lambda: 1", "lambda"),
    ("a.b", "attribute access"),
    ("a[0]", "subscripts"),
    ("f'{a}'", "f-strings"),
    ("(a := 1)", "assignment"),
    ("upper(*a)", "starred"),
    ("round(a, digits=2)", "round takes"),
    ("upper(a, b)", "takes 1 argument"),
    ("a ** 2", "operator"),
    ("a is None", "is_null"),
    ("a in b", "'in' needs"),
    ("a in (b, 1)", "literal"),
    ("{'a': 1}", "'Dict' syntax"),
    ("{x for x in y}", "comprehensions"),
    ("a @ b", "operator"),
    ("~a", "operator"),
    ("Upper(a)", "unknown function 'Upper'"),
    ("col(a)", "col()"),
    ("b'x'", "literal"),
])
def test_dangerous_or_unsupported_inputs_are_refused(text, fragment):
    with pytest.raises(ExpressionError) as err:
        compile_expression(text)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text, column", [("a +", "end of expression"), ("a + * b", "column 5"),
                                          ("  a b", "column 5")])
def test_syntax_errors_report_offset(text, column):
    with pytest.raises(ExpressionError, match="syntax error") as err:
        compile_expression(text)
    assert column in str(err.value)


def test_empty_expression_is_refused():
    with pytest.raises(ExpressionError, match="empty"):
        compile_expression("   ")


def test_expression_error_is_a_value_error():
    assert issubclass(ExpressionError, ValueError)


# --- scale -----------------------------------------------------------------------------

def test_million_rows():
    n = 1_000_000
    b = pa.record_batch({"quantity": pa.array(range(n), pa.int64()),
                         "unit_price": pa.array([0.5] * n, pa.float64())})
    result = compile_expression("quantity * unit_price").evaluate(b)
    assert len(result) == n and result.type == pa.float64()
    assert result[0].as_py() == 0.0
    assert result[3].as_py() == 1.5
    assert result[n - 1].as_py() == (n - 1) * 0.5

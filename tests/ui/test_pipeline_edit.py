"""Saving from the builder keeps the operator's file: comments and untouched phases stay
as written; the result loads back as the edited pipeline."""

from etlconsole.sample import SAMPLE_PIPELINE_TOML
from etlconsole.spec import load_spec
from etlconsole.ui.pipeline_edit import PipelineEditor


def test_save_keeps_comments_and_only_rewrites_what_changed(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(SAMPLE_PIPELINE_TOML, encoding="utf-8")
    comments = [line for line in SAMPLE_PIPELINE_TOML.splitlines() if line.startswith("#")]
    assert comments
    editor = PipelineEditor(path)
    editor.toggle(1)                      # validate off
    editor.move(3, -1)                    # map before transform
    at = editor.add(0, "clean")
    editor.set_options(at, {"trim": True})
    editor.save()
    text = path.read_text(encoding="utf-8")
    assert all(c in text.splitlines() for c in comments)
    assert "\n\n\n" not in text
    assert 'null_values = ["", "NULL", "N/A"]' in text          # untouched layout
    spec = load_spec(path)
    assert spec == editor.spec
    assert [(p.type, p.enabled) for p in spec.phases] == [
        ("clean", True), ("clean", True), ("validate", False), ("map", True),
        ("transform", True), ("load", True)]
    assert spec.phases[1].options == {"trim": True}
    editor.toggle(2)                      # and a second save on the same editor
    editor.save()
    assert "enabled" not in path.read_text(encoding="utf-8")


# -- moving, editing: text of other phases untouched, comments travel ----------------
import pytest  # noqa: E402

from etlconsole.ui.pipeline_edit import parse_option, parse_when, split_phases  # noqa: E402


def sample(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(SAMPLE_PIPELINE_TOML, encoding="utf-8")
    return path, split_phases(SAMPLE_PIPELINE_TOML)[1]


def test_comments_travel_with_their_phase_when_moved(tmp_path):
    path, pieces = sample(tmp_path)
    editor = PipelineEditor(path)
    editor.move(1, 1)                     # validate (with its two comment lines) after transform
    editor.save()
    text = path.read_text(encoding="utf-8")
    assert [p.rstrip("\n") for p in split_phases(text)[1][:3]] == \
        [p.rstrip("\n") for p in (pieces[0], pieces[2], pieces[1])]
    validate = text.index('type = "validate"')
    comment = text.index("# Every defect in the generated file")
    transform = text.index('type = "transform"')
    assert transform < comment < validate
    assert text.index("# Typed columns and the order total.") < transform


def test_editing_one_phase_leaves_the_others_byte_identical(tmp_path):
    path, pieces = sample(tmp_path)
    editor = PipelineEditor(path)
    editor.set_options(2, {**editor.phases[2].options, "rename": {"total": "amount"}},
                       checkpoint=True, when={"env": "TRANSFORM"})
    editor.save()
    text = path.read_text(encoding="utf-8")
    after = split_phases(text)[1]
    for i in (0, 1, 3, 4):
        assert after[i].rstrip("\n") == pieces[i].rstrip("\n")
    edited = after[2]
    assert edited.startswith("# Typed columns and the order total.\n[[phases]]\n")
    assert pieces[2].splitlines()[3] in edited        # the untouched cast line, as written
    assert 'rename = { total = "amount" }' in edited
    assert "checkpoint = true" in edited and 'when = { env = "TRANSFORM" }' in edited
    assert load_spec(path) == editor.spec


def test_long_values_are_written_as_people_write_toml(tmp_path):
    path, _ = sample(tmp_path)
    editor = PipelineEditor(path)
    editor.set_options(1, {"rules": [{"column": "a", "required": True},
                                     {"column": "b", "type": "int64"}]})
    long = {f"col_{i}": f"upper(customer_name_{i})" for i in range(6)}
    editor.set_options(2, {"derive": long})
    editor.save()
    text = path.read_text(encoding="utf-8")
    assert ('rules = [\n  { column = "a", required = true },\n'
            '  { column = "b", type = "int64" },\n]') in text
    assert "[phases.derive]\ncol_0 = \"upper(customer_name_0)\"\n" in text
    assert load_spec(path) == editor.spec


def test_a_new_pipeline_file(tmp_path):
    path = tmp_path / "new.toml"
    editor = PipelineEditor(path)
    assert editor.new and editor.dirty and not path.exists()
    editor.set_source("orders.csv", delimiter=";")
    assert editor.add(-1, "load") == 0
    assert editor.add(-1, "clean") == 0                   # before the load that ends the line
    assert editor.add(0, "validate") == 1
    assert editor.add(5, "transform") == 2                # never after the load
    editor.set_options(3, {"path": "w.db", "table": "t"})
    editor.save()
    spec = load_spec(path)
    assert [p.type for p in spec.phases] == ["clean", "validate", "transform", "load"]
    assert spec.source.path == "orders.csv" and spec.source.delimiter == ";"
    assert path.read_text().startswith('name = "new"\n\n[source]\npath = "orders.csv"\n')
    with pytest.raises(Exception, match="must end in .toml"):
        PipelineEditor(tmp_path / "new.txt")


@pytest.mark.parametrize("kind,text,value", [
    ("string[]", '"", "NULL"', ["", "NULL"]),
    ("string[]", '["a", "b"]', ["a", "b"]),
    ("string[]", "customer_email, country", ["customer_email", "country"]),
    ("table", 'total = "quantity * unit_price"', {"total": "quantity * unit_price"}),
    ("table", 'a = "x", b = "y"', {"a": "x", "b": "y"}),
    ("table", '{ a = "x" }', {"a": "x"}),
    ("table", 'a = "x"\nb = ["%d/%m/%Y"]', {"a": "x", "b": ["%d/%m/%Y"]}),
    ("table[]", '{ column = "a" }, { column = "b", min = 1 }',
     [{"column": "a"}, {"column": "b", "min": 1}]),
    ("table[]", '[\n  { column = "a" },\n]', [{"column": "a"}]),
    ("table[]", 'column = "a", required = true', [{"column": "a", "required": True}]),
    ("table[]", 'column = "a"\ncolumn = "b", min = 1',
     [{"column": "a"}, {"column": "b", "min": 1}]),
    ("int", "12", 12),
    ("string", '"quoted"', "quoted"),
    ("string", "plain text", "plain text"),
    ("bool", "yes", True),
    ("table", "   ", None),
])
def test_the_form_reads_what_people_write(kind, text, value):
    assert parse_option(kind, text) == value


@pytest.mark.parametrize("kind,text,where", [
    ("table", "total = quantity * unit_price", "line 1, column 9"),
    ("table", 'a = "x"\nb = nope', "line 2, column 5"),
    ("string[]", '"a", "b', "line 1"),
    ("table[]", 'column = "a"\ncolumn = b', "line 2, column 10"),
])
def test_form_errors_point_at_what_was_typed(kind, text, where):
    with pytest.raises(ValueError, match=where):
        parse_option(kind, text)


def test_when_as_typed():
    assert parse_when('env = "MASK"') == {"env": "MASK"}
    assert parse_when('{ not = { env = "SKIP" } }') == {"not": {"env": "SKIP"}}
    assert parse_when("my_checks.files:is_eu_file") == "my_checks.files:is_eu_file"
    assert parse_when("") is None

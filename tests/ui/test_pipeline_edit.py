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

"""Issue 17: inputs that were refused or rejected with a misleading reason. Each says what
it is and how to read it (real CLI, one line, exit 2 when refused; the destination
untouched)."""

from __future__ import annotations

import json
from pathlib import Path

from .faultkit import Lab, tables

PLAIN = '''name = "plain"
[source]
path = {source}
{extra}

[[phases]]
type = "load"
destination = "sqlite"
path = "warehouse.db"
table = "t"
'''


def _lab(tmp_path: Path, data: bytes, extra: str = "") -> Lab:
    source = tmp_path / "data.csv"
    source.write_bytes(data)
    lab = Lab(tmp_path / "lab", source)
    lab.pipeline.write_text(PLAIN.format(source=json.dumps(str(source)), extra=extra),
                            encoding="utf-8")
    return lab


TEXT = "id,name,city,amount\n" + "".join(f"{i},name {i},Zürich,{i * 3}\n" for i in range(1, 200))


def _assert_refused(lab: Lab, *needles: str) -> str:
    res = lab.cli("run", lab.pipeline, "--no-ui", "--json")
    assert res.returncode == 2, str(res)
    assert "Traceback" not in res.stderr + res.stdout
    assert len(res.stderr_lines) == 1 and res.stderr_lines[0].startswith("error:"), str(res)
    line = res.stderr_lines[0]
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert not lab.dest.exists() or tables(lab.dest) == [], "the destination was written"
    return line


def test_utf16_with_bom_read_as_utf8_says_utf16_and_how_to_read_it(tmp_path):
    lab = _lab(tmp_path, TEXT.encode("utf-16"), extra='encoding = "utf-8"')
    line = _assert_refused(lab, "data.csv", "UTF-16", 'encoding = "utf-16"')
    assert "binary" not in line, line
    # read as the message says, it loads
    lab.pipeline.write_text(lab.pipeline.read_text().replace('encoding = "utf-8"',
                                                             'encoding = "utf-16"'))
    summary = lab.run()
    assert (summary["rows_loaded"], summary["rows_rejected"]) == (199, 0)


def test_utf16_without_bom_says_utf16_and_its_byte_order(tmp_path):
    lab = _lab(tmp_path, TEXT.encode("utf-16-le"))        # no BOM, encoding sniffed
    _assert_refused(lab, "data.csv", "UTF-16", 'encoding = "utf-16-le"')
    lab.pipeline.write_text(PLAIN.format(source=json.dumps(str(tmp_path / "data.csv")),
                                         extra='encoding = "utf-16-le"'), encoding="utf-8")
    assert lab.run()["rows_loaded"] == 199


def test_a_real_binary_file_is_still_called_binary(tmp_path):
    lab = _lab(tmp_path, b"id,name\n1,\x00\x01\x02\x03\xff\xfe\x00\x00\x07\n")
    _assert_refused(lab, "data.csv", "binary")


def test_a_quote_never_closed_names_its_record_and_the_lines_it_swallowed(tmp_path):
    lines = TEXT.splitlines()
    lines[51] = '51,"name 51,Zürich,153'          # record 51 opens a quote, never closed
    lab = _lab(tmp_path, ("\n".join(lines) + "\n").encode())
    summary = lab.run()
    assert (summary["rows_read"], summary["rows_loaded"], summary["rows_rejected"]) == (51, 50, 1)
    res = lab.cli("rejects", summary["job_id"], "--json")
    assert res.returncode == 0, str(res)
    [reject] = res.json_lines()
    assert reject["row"] == 51 and reject["rule"] == "fields", reject
    message = reject["message"]
    assert "quote" in message and "record 51" in message and "never closed" in message, message
    assert "148 line" in message, message            # records 52..199 went into it

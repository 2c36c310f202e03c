"""PIPELINE_* settings: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from etlconsole.config import ENV_VARS, Settings, describe, load_settings
from etlconsole.errors import UserError

NUMERIC = {
    "PIPELINE_MAX_MEMORY_MB": ("max_memory_mb", 64),
    "PIPELINE_CHUNK_SIZE": ("chunk_size", 1),
    "PIPELINE_STREAM_HIGH_WATER_MARK": ("stream_high_water_mark", 4096),
    "PIPELINE_BATCH_SIZE_MIN": ("batch_size_min", 1),
    "PIPELINE_BATCH_SIZE_MAX": ("batch_size_max", 1),
    "PIPELINE_BATCH_RETRY_ATTEMPTS": ("batch_retry_attempts", 0),
    "PIPELINE_BATCH_RETRY_DELAY_MS": ("batch_retry_delay_ms", 0),
    "PIPELINE_CHECKPOINT_INTERVAL": ("checkpoint_interval", 1),
    "PIPELINE_TRANSACTION_TIMEOUT_MS": ("transaction_timeout_ms", 0),
    "PIPELINE_ROLLBACK_RETENTION_HOURS": ("rollback_retention_hours", 0),
    "PIPELINE_PART_SIZE_KB": ("part_size_kb", 0),
}


def test_defaults():
    s = load_settings({})
    assert s == Settings()
    assert s.max_memory_mb == 512
    assert s.chunk_size == 32_768
    assert s.stream_high_water_mark == 256 * 1024
    assert (s.batch_size_min, s.batch_size_max) == (1_000, 50_000)
    assert (s.batch_retry_attempts, s.batch_retry_delay_ms) == (3, 200)
    assert s.checkpoint_interval == 100_000
    assert s.transaction_timeout_ms == 30_000
    assert s.rollback_retention_hours == 168
    assert s.state_db == ".etlconsole/state.db"
    assert s.state_path == Path(".etlconsole/state.db")


def test_unrelated_environment_is_ignored():
    assert load_settings({"PATH": "/bin", "PIPELINE_NOPE": "x", "HOME": "/root"}) == Settings()


def test_blank_value_means_default():
    assert load_settings({"PIPELINE_CHUNK_SIZE": "  "}).chunk_size == 32_768


@pytest.mark.parametrize("var", sorted(NUMERIC))
def test_each_numeric_variable_is_parsed(var):
    field, minimum = NUMERIC[var]
    value = max(minimum, 1) + 4096 + 7      # distinct from every default and above every minimum
    env = {var: str(value)}
    if var == "PIPELINE_BATCH_SIZE_MIN":
        env["PIPELINE_BATCH_SIZE_MAX"] = str(value)
    s = load_settings(env)
    assert getattr(s, field) == value
    others = {f: getattr(s, f) for f, _ in NUMERIC.values() if f != field}
    defaults = {f: getattr(Settings(), f) for f, _ in NUMERIC.values() if f != field}
    if var != "PIPELINE_BATCH_SIZE_MIN":
        assert others == defaults


@pytest.mark.parametrize("var", sorted(NUMERIC))
def test_minimum_is_accepted(var):
    field, minimum = NUMERIC[var]
    env = {var: str(minimum)}
    if var == "PIPELINE_BATCH_SIZE_MAX":
        env["PIPELINE_BATCH_SIZE_MIN"] = str(minimum)
    assert getattr(load_settings(env), field) == minimum


def test_whitespace_and_underscores_allowed():
    s = load_settings({"PIPELINE_CHUNK_SIZE": " 1_000 ", "PIPELINE_MAX_MEMORY_MB": "\t256\n"})
    assert s.chunk_size == 1000 and s.max_memory_mb == 256


def test_state_db_variable():
    assert load_settings({"PIPELINE_STATE_DB": "/tmp/x/state.db"}).state_path == Path("/tmp/x/state.db")


@pytest.mark.parametrize("var", sorted(NUMERIC))
@pytest.mark.parametrize("raw", ["abc", "1.5", "1e3", "12MB", "0x10"])
def test_non_number_names_the_variable(var, raw):
    with pytest.raises(UserError) as info:
        load_settings({var: raw})
    assert var in str(info.value)
    assert raw in str(info.value)


@pytest.mark.parametrize("var", sorted(NUMERIC))
def test_negative_names_the_variable(var):
    with pytest.raises(UserError) as info:
        load_settings({var: "-5"})
    assert var in str(info.value)
    assert "-5" in str(info.value)


@pytest.mark.parametrize("var", [v for v, (_, m) in NUMERIC.items() if m > 0])
def test_below_minimum_names_the_variable_and_minimum(var):
    _, minimum = NUMERIC[var]
    with pytest.raises(UserError) as info:
        load_settings({var: str(minimum - 1)})
    assert var in str(info.value) and str(minimum) in str(info.value)


def test_min_greater_than_max_names_both():
    with pytest.raises(UserError) as info:
        load_settings({"PIPELINE_BATCH_SIZE_MIN": "100", "PIPELINE_BATCH_SIZE_MAX": "10"})
    msg = str(info.value)
    assert "PIPELINE_BATCH_SIZE_MIN" in msg and "PIPELINE_BATCH_SIZE_MAX" in msg
    assert "100" in msg and "10" in msg


def test_max_below_default_min_is_refused():
    with pytest.raises(UserError, match="PIPELINE_BATCH_SIZE_MAX"):
        load_settings({"PIPELINE_BATCH_SIZE_MAX": "500"})


def test_min_equal_max_is_fine():
    s = load_settings({"PIPELINE_BATCH_SIZE_MIN": "200", "PIPELINE_BATCH_SIZE_MAX": "200"})
    assert s.batch_size_min == s.batch_size_max == 200


def test_overrides_win_over_environment():
    s = load_settings({"PIPELINE_CHUNK_SIZE": "10", "PIPELINE_STATE_DB": "a.db"},
                      chunk_size=20, state_db=None)
    assert s.chunk_size == 20 and s.state_db == "a.db"


def test_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("PIPELINE_CHECKPOINT_INTERVAL", "1234")
    assert load_settings().checkpoint_interval == 1234
    monkeypatch.setenv("PIPELINE_CHECKPOINT_INTERVAL", "zero")
    with pytest.raises(UserError, match="PIPELINE_CHECKPOINT_INTERVAL"):
        load_settings()


def test_describe_lists_every_variable_with_its_default():
    rows = describe()
    assert [r[0] for r in rows] == [*NUMERIC, "PIPELINE_STATE_DB"]
    assert set(ENV_VARS) == {r[0] for r in rows}
    defaults = Settings()
    for var, default, meaning in rows:
        field = NUMERIC[var][0] if var in NUMERIC else "state_db"
        assert default == getattr(defaults, field)
        assert meaning


@pytest.mark.parametrize("raw", ["_1_", "１２", "1__0", "0x10"])
def test_only_plain_ascii_digits_are_numbers(raw):
    from etlconsole.config import load_settings
    from etlconsole.errors import UserError
    with pytest.raises(UserError, match="PIPELINE_CHUNK_SIZE"):
        load_settings({"PIPELINE_CHUNK_SIZE": raw})

"""Telling a job's record number as (file, record within it): manyfiles.locator, by
bisection over where the files start, in the files' order."""

from etlconsole.engine.manyfiles import file_locator, locator

FILES = [{"path": "a.csv", "first_record": 1, "records": 3},
         {"path": "empty.csv", "first_record": 4, "records": 0},
         {"path": "b.csv", "first_record": 4, "records": 2},
         {"path": "c.csv", "first_record": 6},          # read to no end yet
         {"path": "d.csv"}]                             # not reached yet


def test_each_record_is_told_by_the_file_that_holds_it():
    locate = locator(FILES)
    assert [locate(r) for r in (1, 3, 4, 5, 6, 99)] == [
        ("a.csv", 1), ("a.csv", 3), ("b.csv", 1), ("b.csv", 2), ("c.csv", 1), ("c.csv", 94)]


def test_a_record_before_every_known_start_or_none_is_not_told():
    assert locator(FILES)(0) is None and locator(FILES)(None) is None
    assert locator([])(5) is None and locator([{"path": "x.csv"}])(1) is None


def test_the_listings_form():
    where = file_locator(FILES)
    assert where(5) == {"file": "b.csv", "file_record": 2} and where(None) == {} == file_locator([])(3)


def test_a_drop_of_thousands_of_files():
    files = [{"path": f"f{i}.csv", "first_record": 1 + 10 * i, "records": 10} for i in range(5000)]
    locate = locator(files)
    rows = [1, 10, 11, 25_007, 49_990, 50_000]
    assert [locate(r) for r in rows] == [(f"f{(r - 1) // 10}.csv", (r - 1) % 10 + 1) for r in rows]

"""A deterministic, realistically dirty ``orders.csv`` and the pipeline that cleans it.

Used by ``etlconsole demo``, by the tests (which assert exact reject counts) and by the
benchmark. ``write_orders_csv`` streams the file in chunks (flat memory) and returns a
``SampleManifest`` with the exact number of defective records of each kind.

Two kinds of dirt are mixed in:

* cosmetic dirt (~6% of rows) that the clean phase of ``SAMPLE_PIPELINE_TOML`` repairs and
  that never causes a reject: spaces around emails and names, UPPER/Mixed case emails,
  lowercase currency and country codes, ``NULL`` / ``N/A`` in ``notes`` and ``shipped_at``;
* defects (about ``dirty_rate`` of the records, exactly one per defective record), every one
  of which is rejected — by the extractor (``ragged_row``) or by the validate phase (all
  others). ``expected_rejected`` is their sum.

Same ``(rows, seed, dirty_rate)`` -> byte-identical file.

CLI (benchmark): ``python -m etlconsole.sample PATH ROWS [--seed S] [--dirty-rate R]``;
with ``--files N [--compress gzip|bz2|zstd|lz4] [--every K]`` PATH is a folder: a drop of
N files holding the same records (``write_orders_drop``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import asdict, dataclass
from datetime import date, timedelta

__all__ = ["HEADER", "COLUMNS", "DEFECT_KINDS", "SAMPLE_PIPELINE_TOML", "SampleManifest",
           "write_orders_csv", "write_orders_drop", "main"]

COLUMNS = ("order_id", "customer_id", "customer_email", "customer_name", "status", "quantity",
           "unit_price", "currency", "ordered_on", "shipped_at", "country", "city", "sku",
           "notes")
HEADER = ",".join(COLUMNS)

# Every kind is rejected by the sample pipeline; the order is the manifest's order.
DEFECT_KINDS = ("missing_order_id", "duplicate_order_id", "bad_email", "bad_status",
                "bad_quantity", "negative_price", "bad_date", "bad_timestamp", "ragged_row",
                "bad_currency")

# The defects above are designed against exactly this pipeline.
SAMPLE_PIPELINE_TOML = r"""# Sample pipeline: orders.csv -> warehouse.db (table orders)
name = "orders"

[source]
path = "orders.csv"

# Cosmetic repairs: trim every value, turn "", "NULL" and "N/A" into null,
# normalise the case of emails and codes. Nothing is rejected here.
[[phases]]
type = "clean"
trim = true
null_values = ["", "NULL", "N/A"]
lowercase = ["customer_email"]
uppercase = ["currency", "country"]

# Every defect in the generated file breaks exactly one of these rules
# (ragged rows are already rejected by the extractor).
[[phases]]
type = "validate"
on_error = "reject"
rules = [
  { column = "order_id", required = true, type = "int64", unique = true },
  { column = "customer_email", required = true, pattern = '^[^@ ]+@[^@ ]+\.[a-z]{2,}$' },
  { column = "status", allowed = ["new", "paid", "shipped", "cancelled"] },
  { column = "quantity", required = true, type = "int64", min = 1, max = 10000 },
  { column = "unit_price", required = true, type = "float64", min = 0 },
  { column = "currency", allowed = ["EUR", "USD", "GBP"], max_length = 3 },
  { column = "ordered_on", required = true, type = "date" },
  { column = "shipped_at", type = "timestamp" },
]

# Typed columns and the order total.
[[phases]]
type = "transform"
cast = { order_id = "int64", customer_id = "int64", quantity = "int64", unit_price = "float64", ordered_on = "date", shipped_at = "timestamp" }
derive = { total = "round(quantity * unit_price, 2)" }

# Source column -> warehouse column (sku, city and notes are dropped).
[[phases]]
type = "map"
columns = { order_id = "id", customer_id = "customer_id", customer_email = "email", customer_name = "customer_name", status = "status", quantity = "quantity", unit_price = "unit_price", total = "total", currency = "currency", ordered_on = "ordered_on", shipped_at = "shipped_at", country = "country" }

[[phases]]
type = "load"
destination = "sqlite"
path = "warehouse.db"
table = "orders"
mode = "append"
"""  # noqa: E501 (a TOML inline table is one line)


@dataclass(frozen=True)
class SampleManifest:
    rows: int                      # data records written (excluding header)
    defects: dict[str, int]        # defect name -> number of records with that defect
    expected_rejected: int         # records the sample pipeline must reject
    expected_loaded: int           # rows - expected_rejected

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


# --------------------------------------------------------------------------------------
# Value pools. Built once per call from the seeded generator, then sampled per row with
# ``Random.choices`` (uniform, so weights are expressed by repetition in the pool).

_FIRST = ("Jane", "John", "Maria", "Liam", "Emma", "Noah", "Olivia", "Lucas", "Sofia", "Mateo",
          "Mia", "Elias", "Anna", "Jonas", "Lea", "Ben", "Chloe", "Hugo", "Alice", "Louis",
          "Zoe", "Leon", "Ella", "Finn", "Ida", "Oscar", "Nora", "Arthur", "Lina", "Paul",
          "Ava", "Jack", "Isla", "Harry", "Grace", "Tom", "Eva", "Max", "Julia", "David",
          "Sara", "Pedro", "Ines", "Marco", "Giulia", "Jan", "Eva", "Piet", "Sanne", "Ahmed")
_LAST = ("Doe", "Smith", "Garcia", "Muller", "Rossi", "Martin", "Jansen", "Silva", "Novak",
         "Kowalski", "Dubois", "Schmidt", "Brown", "Wilson", "Taylor", "Moreau", "Fischer",
         "Weber", "Bianchi", "Romano", "Lopez", "Perez", "Costa", "Santos", "Berg", "Larsen",
         "Nielsen", "Hansen", "Meyer", "Wagner", "Becker", "Hoffmann", "Visser", "Bakker",
         "Murphy", "Kelly", "Walsh", "Evans", "Roberts", "Clarke", "Fontaine", "Laurent",
         "Horvat", "Nagy", "Popescu", "Ionescu", "Andersson", "Johansson", "Virtanen", "Koch")
_NICK = ("JJ", "Ace", "Doc", "Red", "Bo", "Kit", "Sunny", "Max")
_DOMAINS = ("example.com",) * 6 + ("example.org", "example.net", "mail.example.com")
_PLACES = {
    "DE": ("Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt"),
    "FR": ("Paris", "Lyon", "Marseille", "Toulouse", "Nantes"),
    "GB": ("London", "Manchester", "Leeds", "Bristol", "Glasgow"),
    "NL": ("Amsterdam", "Rotterdam", "Utrecht", "Eindhoven"),
    "ES": ("Madrid", "Barcelona", "Valencia", "Seville"),
    "IT": ("Rome", "Milan", "Naples", "Turin"),
    "US": ("New York", "Chicago", "Austin", "Seattle", "Boston"),
    "IE": ("Dublin", "Cork", "Galway"),
    "BE": ("Brussels", "Antwerp", "Ghent"),
    "PL": ("Warsaw", "Krakow", "Gdansk"),
}
_NOTES = ("leave at the door", "gift wrap please", "fragile", "call before delivery",
          "deliver after 5pm", "no invoice in the box", "second attempt", "customer is VIP",
          "replacement order", "back-ordered item", "leave with neighbour, flat 2",
          "ring twice, then wait", 'box marked "urgent"', "express shipping requested")
_NOTES_MULTILINE = ("first line\nsecond line", "deliver to reception\nask for Sam",
                    "gift message:\nHappy birthday, Anna!", "address note:\nback entrance")

_START = date(2023, 1, 1)
_DAYS = (date(2025, 12, 31) - _START).days + 1      # ordered_on range, inclusive
_SHIP_DELAY = 8                                      # shipped 0..7 days after ordering

_BAD_STATUS = ("unknown", "refunded")
_BAD_QUANTITY = ("ten", "0", "-3", "20000")
_BAD_DATE = ("2024-02-30", "31/12/2024", "2024-13-01")
_BAD_TIMESTAMP = ("2024-03-01 25:00:00", "yesterday")
_CHUNK = 16_384                                      # rows per write; fixed for determinism


def _csv(value: str) -> str:
    """One CSV field, quoted (with doubled quotes) when it needs to be."""
    if any(c in value for c in ',"\n\r'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _pad(rng: random.Random, value: str) -> str:
    return rng.choice((" ", "  ", "")) + value + rng.choice((" ", "  ")) if value else value


class _Pools:
    """Pre-encoded CSV fragments; a row is a handful of picks from these lists."""

    def __init__(self, rng: random.Random):
        # Customers: (customer_id, email, encoded name); ~5% names need quoting.
        self.customers: list[tuple[str, str, str]] = []
        for _ in range(20_000):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            email = f"{first.lower()}.{last.lower()}{rng.randrange(1, 1000)}@{rng.choice(_DOMAINS)}"
            r = rng.random()
            if r < 0.035:
                name = f"{last}, {first}"
            elif r < 0.05:
                name = f'{first} "{rng.choice(_NICK)}" {last}'
            else:
                name = f"{first} {last}"
            r = rng.random()                         # cosmetic: ~3% of customer fragments
            if r < 0.008:
                email = email.upper()
            elif r < 0.016:
                email = email[0].upper() + email[1:].replace("@e", "@E")
            elif r < 0.024:
                email = _pad(rng, email)
            elif r < 0.03:
                name = _pad(rng, name)
            self.customers.append((str(rng.randrange(100_000, 1_000_000)), email, _csv(name)))
        self.customer = [f"{c},{e},{n}" for c, e, n in self.customers]

        self.status = ["new"] * 3 + ["paid"] * 5 + ["shipped"] * 10 + ["cancelled"] * 2
        qty_weights = [(q, 60 if q <= 3 else 12 if q <= 10 else 2) for q in range(1, 51)]
        self.quantity = [str(q) for q, w in qty_weights for _ in range(w)]
        self.price = [f"{c // 100}.{c % 100:02d}" for c in range(50, 100_000)]
        self.qty_price = [f"{rng.choice(self.quantity)},{rng.choice(self.price)}"
                          for _ in range(65_536)]
        # ~1% lowercase (cosmetic)
        self.currency = ["EUR"] * 110 + ["USD"] * 50 + ["GBP"] * 38 + ["eur", "usd"]
        self.dates = [(_START + timedelta(d)).isoformat() for d in range(_DAYS + _SHIP_DELAY)]
        self.day = list(range(_DAYS))
        self.ship = [(rng.randrange(_SHIP_DELAY),
                      f"T{rng.randrange(6, 23):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}")
                     for _ in range(20_000)]
        # shipped_at of orders that have not shipped: empty, ~1% NULL / N/A (cosmetic)
        self.unshipped = [""] * 98 + ["NULL", "N/A"]
        geo = []
        for country, cities in _PLACES.items():
            for city in cities:
                geo += [f"{country},{city}"] * 100 + [f"{country.lower()},{city}"]  # ~1% lower
        self.geo_sku = [f"{rng.choice(geo)},SKU-{rng.randrange(1, 2000):05d}"
                        for _ in range(65_536)]
        # notes: mostly empty, ~1.5% NULL / N/A (cosmetic), 0.1% with an embedded newline
        notes = [""] * 7_000 + ["NULL"] * 75 + ["N/A"] * 75
        notes += [_csv(rng.choice(_NOTES_MULTILINE)) for _ in range(10)]
        notes += [_csv(rng.choice(_NOTES)) for _ in range(10_000 - len(notes))]
        self.notes = notes

    def fields(self, rng: random.Random, order_id: str) -> list[str]:
        """One clean record as 14 encoded fields (the slow path, for defect records)."""
        cid, email, name = rng.choice(self.customers)
        status = rng.choice(self.status)
        day = rng.choice(self.day)
        delay, tod = rng.choice(self.ship)
        shipped = self.dates[day + delay] + tod if status == "shipped" else rng.choice(self.unshipped)
        qty, price = rng.choice(self.qty_price).split(",")
        country, city, sku = rng.choice(self.geo_sku).split(",")
        return [order_id, cid, email, name, status, qty, price, rng.choice(self.currency),
                self.dates[day], shipped, country, city, sku, rng.choice(self.notes)]


def _plan(rng: random.Random, rows: int, dirty_rate: float) -> tuple[dict[int, str], dict[int, int]]:
    """Defect kind per record index, and the (clean, earlier) index each duplicate copies."""
    n = round(rows * dirty_rate)
    if dirty_rate > 0 and rows >= 200:
        n = max(n, len(DEFECT_KINDS))            # every kind at least once
    n = min(n, rows - 1) if rows > 1 else 0      # record 0 is always clean
    positions = rng.sample(range(1, rows), n) if n else []
    kinds = [DEFECT_KINDS[i % len(DEFECT_KINDS)] for i in range(n)]
    rng.shuffle(kinds)
    plan = dict(zip(positions, kinds, strict=False))

    dup_of: dict[int, int] = {}
    used: set[int] = set()
    for pos in sorted(p for p, k in plan.items() if k == "duplicate_order_id"):
        start = pos - 1 - rng.randrange(min(pos, 5_000))
        ref = next((r for r in range(start, -1, -1) if r not in plan and r not in used), None)
        if ref is None:
            ref = next((r for r in range(start + 1, pos) if r not in plan and r not in used), None)
        if ref is None:                          # no clean earlier record left to copy
            plan[pos] = "missing_order_id"
            continue
        used.add(ref)
        dup_of[pos] = ref
    return plan, dup_of


def _defect_line(rng: random.Random, pools: _Pools, index: int, kind: str, dup_of: dict[int, int]) -> str:
    f = pools.fields(rng, str(index + 1))
    if kind == "missing_order_id":
        f[0] = ""
    elif kind == "duplicate_order_id":
        f[0] = str(dup_of[index] + 1)
    elif kind == "bad_email":
        f[2] = f[2].replace("@", rng.choice((".", "", " at ")))
    elif kind == "bad_status":
        f[4] = rng.choice(_BAD_STATUS)
    elif kind == "bad_quantity":
        f[5] = rng.choice(_BAD_QUANTITY)
    elif kind == "negative_price":
        f[6] = rng.choice(("-5.00", "-" + rng.choice(pools.price)))
    elif kind == "bad_date":
        f[8] = rng.choice(_BAD_DATE)
    elif kind == "bad_timestamp":
        f[4], f[9] = "shipped", rng.choice(_BAD_TIMESTAMP)
    elif kind == "ragged_row":
        del f[11:13]                             # city and sku missing: 12 fields
    elif kind == "bad_currency":
        f[7] = "EURO"
    else:  # pragma: no cover
        raise ValueError(kind)
    return ",".join(f)


def write_orders_csv(path, rows: int, seed: int = 7, dirty_rate: float = 0.02) -> SampleManifest:
    """Write ``rows`` order records (plus header) to ``path``; return what was written.

    Roughly ``dirty_rate`` of the records carry exactly one defect each; with ``rows >= 200``
    and ``dirty_rate > 0`` every defect kind occurs at least once.
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ValueError(f"rows must be a non-negative int, not {rows!r}")
    if not 0 <= dirty_rate <= 0.5:
        raise ValueError(f"dirty_rate must be within 0..0.5, not {dirty_rate!r}")

    master = random.Random(seed)
    pools = _Pools(random.Random(master.getrandbits(64)))
    plan, dup_of = _plan(random.Random(master.getrandbits(64)), rows, dirty_rate)
    rng = random.Random(master.getrandbits(64))          # clean rows
    drng = random.Random(master.getrandbits(64))         # defect rows
    defect_at = sorted(plan)
    counts = dict.fromkeys(DEFECT_KINDS, 0)
    for kind in plan.values():
        counts[kind] += 1

    choices = rng.choices
    customer, status, qty_price, currency = pools.customer, pools.status, pools.qty_price, pools.currency
    dates, day, ship, unshipped = pools.dates, pools.day, pools.ship, pools.unshipped
    geo_sku, notes = pools.geo_sku, pools.notes
    d = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\n")
        for start in range(0, rows, _CHUNK):
            k = min(_CHUNK, rows - start)
            lines = [
                f"{oid},{c},{st},{qp},{cur},{dates[dy]},"
                f"{(dates[dy + sh[0]] + sh[1]) if st == 'shipped' else un},{gs},{nt}"
                for oid, c, st, qp, cur, dy, sh, un, gs, nt in zip(
                    range(start + 1, start + k + 1), choices(customer, k=k),
                    choices(status, k=k), choices(qty_price, k=k), choices(currency, k=k),
                    choices(day, k=k), choices(ship, k=k), choices(unshipped, k=k),
                    choices(geo_sku, k=k), choices(notes, k=k), strict=False)
            ]
            end = start + k
            while d < len(defect_at) and defect_at[d] < end:
                i = defect_at[d]
                lines[i - start] = _defect_line(drng, pools, i, plan[i], dup_of)
                d += 1
            lines.append("")
            out.write("\n".join(lines))

    rejected = sum(counts.values())
    return SampleManifest(rows=rows, defects=counts, expected_rejected=rejected,
                          expected_loaded=rows - rejected)


_SUFFIX = {"gzip": ".gz", "bz2": ".bz2", "zstd": ".zst", "lz4": ".lz4"}


def write_orders_drop(folder, rows: int, files: int, *, seed: int = 7, dirty_rate: float = 0.02,
                      compress: str | None = None, every: int = 1) -> SampleManifest:
    """The records of ``write_orders_csv(rows, seed)`` split into ``files`` files
    ``orders_001.csv`` … of about equal size, each with the header (a drop: what a source of
    many files reads, ADR 0025). With ``compress`` (gzip, bz2, zstd, lz4) every ``every``-th
    file is compressed by pyarrow. A record with a quoted newline stays in one file, so the
    drop read in order holds the same records as the one file (and the same manifest)."""
    from pathlib import Path
    if not isinstance(files, int) or files < 1:
        raise ValueError(f"files must be a positive int, not {files!r}")
    if compress is not None and compress not in _SUFFIX:
        raise ValueError(f"compress must be one of {', '.join(_SUFFIX)}, not {compress!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    whole = folder / ".orders-whole.csv.tmp"
    manifest = write_orders_csv(whole, rows, seed=seed, dirty_rate=dirty_rate)
    per_file = -(-rows // files) if rows else 0
    try:
        with open(whole, "rb") as src:
            header = src.readline()
            for i in range(files):
                compressed = compress is not None and (i + 1) % every == 0
                name = f"orders_{i + 1:03d}.csv" + (_SUFFIX[compress] if compressed and compress else "")
                with _sink(folder / name, compress if compressed else None) as out:
                    out.write(header)
                    _copy_records(src, out, per_file)
    finally:
        whole.unlink(missing_ok=True)
    return manifest


def _sink(path, codec: str | None):
    import pyarrow as pa
    if codec is None:
        return open(path, "wb")
    return pa.CompressedOutputStream(str(path), codec)


def _copy_records(src, out, records: int) -> None:
    """Copy up to ``records`` records (a quoted newline keeps a record's lines together)."""
    for _ in range(records):
        line = src.readline()
        if not line:
            return
        while line.count(b'"') % 2:        # an open quote: the record goes on
            more = src.readline()
            if not more:
                break
            line += more
        out.write(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etlconsole.sample",
                                     description="Write a deterministic dirty orders CSV.")
    parser.add_argument("path")
    parser.add_argument("rows", type=lambda s: int(s.replace("_", "")))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--dirty-rate", type=float, default=0.02)
    parser.add_argument("--files", type=int, default=0,
                        help="write a drop: PATH is a folder of this many files")
    parser.add_argument("--compress", choices=sorted(_SUFFIX), default=None,
                        help="with --files: compress the files with this codec")
    parser.add_argument("--every", type=int, default=1,
                        help="with --compress: compress only every Nth file")
    args = parser.parse_args(argv)
    try:
        if args.files:
            manifest = write_orders_drop(args.path, args.rows, args.files, seed=args.seed,
                                         dirty_rate=args.dirty_rate, compress=args.compress,
                                         every=max(1, args.every))
        else:
            manifest = write_orders_csv(args.path, args.rows, seed=args.seed,
                                        dirty_rate=args.dirty_rate)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(manifest.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())

from aggregator.clustering.evaluate import Row, rekeyed, stream_order

ROWS = [
    {"id": f"r{n:02d}", "story": f"s{n % 3}", "published": date, "title": f"t{n}", "text": "x"}
    for n, date in enumerate([None] * 12 + ["2024-05-01"] * 6 + ["2024-05-02"] * 6)
]


def order_of(rows: list[Row]) -> list[str]:
    """The rows' titles in arrival order (titles do not change with the ids)."""
    return [str(row["title"]) for row in stream_order(rows)]


def test_order_zero_is_the_file_order() -> None:
    assert rekeyed(ROWS, 0) == ROWS


def test_rekeyed_rows_keep_everything_but_their_ids() -> None:
    for old, new in zip(ROWS, rekeyed(ROWS, 3), strict=True):
        assert new["id"] != old["id"]
        assert {k: v for k, v in new.items() if k != "id"} == {
            k: v for k, v in old.items() if k != "id"
        }
    assert len({row["id"] for row in rekeyed(ROWS, 3)}) == len(ROWS)


def test_other_orders_shuffle_rows_within_a_date_and_keep_dates_in_order() -> None:
    orders = [order_of(rekeyed(ROWS, seed)) for seed in range(4)]
    assert len({tuple(order) for order in orders}) == 4
    for seed in range(4):
        dates = [row.get("published") or "" for row in stream_order(rekeyed(ROWS, seed))]
        assert dates == sorted(dates)


def test_an_order_is_reproducible() -> None:
    assert order_of(rekeyed(ROWS, 7)) == order_of(rekeyed(ROWS, 7))

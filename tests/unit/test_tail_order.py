"""tail's reorder window, without a broker: a source's records come out in the order it wrote them."""

from __future__ import annotations

from logctl.records import Level, id_format
from logctl.tail import InSourceOrder


def row(prefix: str, offset: int, micros: int = 0) -> list[object]:
    return [id_format(prefix) % offset, micros, Level.INFO, "s", f"{prefix}@{offset}", None, {}]


def test_a_later_batch_with_lower_offsets_is_put_before_what_it_precedes() -> None:
    order = InSourceOrder(0.25)
    order.add([row("a", 0), row("a", 20), row("a", 40)], now=0.0)  # the INFO batch
    assert order.ripe(0.1) == []  # held for the window
    order.add([row("a", 10), row("a", 30)], now=0.2)  # the ERROR batch, a linger later
    assert [r[4] for r in order.ripe(0.3)] == ["a@0", "a@10", "a@20", "a@30", "a@40"]
    assert order.held == 0


def test_sources_come_out_in_the_order_of_their_first_records_time() -> None:
    order = InSourceOrder(0.1)
    order.add([row("b", 5, micros=200), row("a", 7, micros=100), row("b", 0, micros=150)], now=0.0)
    assert [r[4] for r in order.ripe(1.0)] == ["a@7", "b@0", "b@5"]


def test_what_has_not_waited_its_window_stays_unless_it_precedes_what_has() -> None:
    order = InSourceOrder(0.25)
    order.add([row("a", 10)], now=0.0)
    order.add([row("a", 0), row("a", 20)], now=0.2)
    assert [r[4] for r in order.ripe(0.3)] == ["a@0", "a@10"]  # a@20 came later and is later: it waits
    assert [r[4] for r in order.rest()] == ["a@20"]

"""The delivery unit without a broker: outputs that confirm out of order, nack, drop the
connection and redeliver. A checkpoint never covers an unconfirmed record, and a receipt
completes only once every batch holding its records is confirmed."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from logctl.checkpoint import CheckpointStore
from logctl.codec import RowPacker, decode_rows
from logctl.delivery import DeliveryThread
from logctl.records import Level
from logctl.shipper import ShipOptions, Shipper
from logctl.transport import Outgoing

LEVELS = ("debug", "info", "warn", "error")


class FlakyOutput:
    """An Output that, at each poll, confirms a few messages in random order, nacks some
    (they stay unconfirmed, as a Publisher resends them) or drops the connection (every
    unconfirmed message is published again: a redelivery of all of them)."""

    def __init__(self, on_confirm: Callable[[object], None], rng: random.Random) -> None:
        self.on_confirm = on_confirm
        self.rng = rng
        self.unconfirmed: list[Outgoing] = []
        self.confirmed: list[Outgoing] = []
        self.published = 0
        self.drops = self.nacks = 0
        self.after_confirm: Callable[[], None] = lambda: None

    @property
    def in_flight(self) -> int:
        return len(self.unconfirmed)

    def publish(self, out: Outgoing) -> None:
        self.unconfirmed.append(out)
        self.published += 1

    def poll(self) -> None:
        for _ in range(self.rng.randint(0, 4)):
            if not self.unconfirmed:
                return
            event = self.rng.random()
            if event < 0.1:
                self.drops += 1
                self.published += len(self.unconfirmed)  # all of them go again
            elif event < 0.25:
                self.nacks += 1
                self.published += 1  # one goes again
            else:
                out = self.unconfirmed.pop(self.rng.randrange(len(self.unconfirmed)))
                self.confirmed.append(out)
                self.on_confirm(out.token)
                self.after_confirm()

    def end_round(self) -> None:
        self.poll()

    def wait_confirmed(self, timeout: float | None = None) -> bool:
        while self.unconfirmed:
            self.poll()
        return True


def _write(path: Path, count: int, rng: random.Random) -> list[int]:
    """Write ``count`` one-line records of random levels; return each line's start offset."""
    starts, offset = [], 0
    with path.open("w") as fh:
        for i in range(count):
            line = f'level={rng.choice(LEVELS)} msg="line {i}" service=svc{i % 3}\n'
            starts.append(offset)
            offset += len(line)
            fh.write(line)
    return starts


@pytest.mark.parametrize(("seed", "lines", "workers"), [(1, 3000, 0), (2, 3000, 0), (3, 120_000, 2)])
def test_a_checkpoint_never_covers_an_unconfirmed_record(tmp_path: Path, seed: int, lines: int, workers: int) -> None:
    rng = random.Random(seed)
    log = tmp_path / "app.log"
    starts = _write(log, lines, rng)
    if workers:
        assert log.stat().st_size > 4 << 20  # the parse workers take it: marks hold receipts of several batches
    confirmed: set[int] = set()
    first_unconfirmed = 0
    outputs: list[FlakyOutput] = []
    options = ShipOptions(paths=(str(log),), follow=False, batch_size=7, linger_s=0.0, workers=workers)

    def make_output(on_confirm: Callable[[object], None]) -> FlakyOutput:
        out = FlakyOutput(on_confirm, rng)
        out.after_confirm = check
        outputs.append(out)
        return out

    def check() -> None:
        nonlocal first_unconfirmed
        for body in (o.body for o in outputs[0].confirmed[len(confirmed_bodies) :]):
            confirmed_bodies.append(body)
            for row in decode_rows(body, RowPacker().content_type):
                confirmed.add(int(str(row[0]).rsplit("-", 1)[1], 16))
        while first_unconfirmed < len(starts) and starts[first_unconfirmed] in confirmed:
            first_unconfirmed += 1
        limit = starts[first_unconfirmed] if first_unconfirmed < len(starts) else log.stat().st_size
        checkpoint = shipper.checkpoints().get(str(log), 0)
        assert checkpoint <= limit, f"checkpoint {checkpoint} covers the unconfirmed record at {limit}"

    confirmed_bodies: list[bytes] = []
    shipper = Shipper(options, make_output, CheckpointStore(tmp_path / "state"), lambda _m: None)
    stats = shipper.run(lambda: False)
    output = outputs[0]
    assert output.drops and output.nacks  # the faults happened
    assert stats.records == lines and len(confirmed) == lines
    assert shipper.checkpoints() == {} or shipper.checkpoints() == {str(log): log.stat().st_size}
    assert CheckpointStore(tmp_path / "state").entries.popitem()[1].offset == log.stat().st_size


def _row(i: int, level: Level) -> list[object]:
    return [f"r-{i:012x}", 1_795_000_000_000_000 + i, level, f"svc{i % 2}", f"m{i}", None, {}]


class HeldOutput:
    """Confirms only when the test says so, from the delivery thread's polls."""

    def __init__(self, on_confirm: Callable[[object], None]) -> None:
        self.on_confirm = on_confirm
        self.unconfirmed: list[Outgoing] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return len(self.unconfirmed)

    def publish(self, out: Outgoing) -> None:
        self.unconfirmed.append(out)

    def poll(self) -> None:
        if self.release.is_set():
            while self.unconfirmed:
                self.on_confirm(self.unconfirmed.pop().token)  # last first: out of order

    def end_round(self) -> None:
        self.poll()

    def wait_confirmed(self, timeout: float | None = None) -> bool:
        while self.unconfirmed and self.release.wait(timeout):
            self.poll()
        return not self.unconfirmed


def test_a_receipt_completes_only_when_all_its_batches_are_confirmed() -> None:
    outputs: list[HeldOutput] = []

    def make_output(on_confirm: Callable[[object], None]) -> HeldOutput:
        outputs.append(HeldOutput(on_confirm))
        return outputs[0]

    delivery = DeliveryThread(make_output, RowPacker(), batch_size=10, linger_s=0.01)
    levels = list(Level)
    group = delivery.submit([_row(i, levels[i % len(levels)]) for i in range(95)])  # many keys, many batches
    other = delivery.submit([_row(1000 + i, Level.INFO) for i in range(3)])
    assert not group.done() and not other.done()
    deadline = threading.Event()
    deadline.wait(0.3)  # lingered: every batch is published now, none confirmed
    output = outputs[0]
    assert output.in_flight > 10
    assert not group.done() and not other.done()
    output.release.set()
    group.result(timeout=5)
    other.result(timeout=5)
    assert delivery.close(timeout=5)
    assert delivery.error is None


def test_a_group_confirmed_batch_by_batch_as_it_is_sent_still_waits_for_its_last_row() -> None:
    """An output that confirms at once (as the dry run does) must not complete a half-batched group."""
    done_at: list[int] = []

    class AtOnce:
        in_flight = 0

        def __init__(self, on_confirm: Callable[[object], None]) -> None:
            self.on_confirm = on_confirm
            self.sent = 0

        def publish(self, out: Outgoing) -> None:
            self.sent += 1
            self.on_confirm(out.token)

        def poll(self) -> None: ...

        def end_round(self) -> None: ...

        def wait_confirmed(self, timeout: float | None = None) -> bool:
            return True

    outputs: list[AtOnce] = []

    def make_output(on_confirm: Callable[[object], None]) -> AtOnce:
        outputs.append(AtOnce(on_confirm))
        return outputs[0]

    delivery = DeliveryThread(make_output, RowPacker(), batch_size=4, linger_s=0.5)
    future = delivery.submit([_row(i, Level.ERROR) for i in range(10)])  # two keys: 4 + 1 rows each
    future.add_done_callback(lambda _f: done_at.append(outputs[0].sent))
    future.result(timeout=5)
    assert done_at == [4]  # completed with the last batch (the lingering ones), not the first
    assert delivery.close(timeout=5)


def test_submit_after_a_failed_output_fails_the_waiting_futures() -> None:
    class Broken:
        in_flight = 0

        def __init__(self, _on_confirm: Callable[[object], None]) -> None: ...

        def publish(self, out: Outgoing) -> None:
            raise ConnectionError("broker gone")

        def poll(self) -> None: ...

        def end_round(self) -> None: ...

        def wait_confirmed(self, timeout: float | None = None) -> bool:
            return True

    delivery = DeliveryThread(Broken, RowPacker(), batch_size=2, linger_s=0.01)
    future = delivery.submit([_row(i, Level.INFO) for i in range(5)])
    with pytest.raises(ConnectionError):
        future.result(timeout=5)
    assert isinstance(delivery.error, ConnectionError)

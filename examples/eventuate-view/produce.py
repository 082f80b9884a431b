#!/usr/bin/env python3
"""Publish domain events to Kafka the way three Eventuate Tram Java services would.

An order, a payment and a delivery service each publish delta events about their own
aggregates; the Rust view under test must fold them into one row per order. Nothing here
shares code with tramline, so the view is checked against records written by a stranger.

Generation (`generate`, `schedule`) is pure and seeded; sending is separate (`send`), and
`--dry-run` prints the records as JSON lines instead of sending them.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import secrets
import sys
import threading
import time
import zlib
from collections import deque
from email.utils import formatdate

SOURCES = ("order", "payment", "delivery")
DEFAULT_TOPICS = {s: f"com.example.{s}.{s.capitalize()}" for s in SOURCES}
BASE_MS = 1796206500000  # Wed, 02 Dec 2026 10:15:00 GMT: the simulated clock's start
COLUMNS = ("order_id", "order_status", "customer_id", "product_id", "quantity", "amount",
           "shipping_address", "payment_id", "payment_status", "delivery_id", "delivery_status")
STREETS = ("Königstraße", "Rue de l'Église", "O'Connell St", '"The Old Mill" Lane',
           "Smith & Sons <Unit 4>", "Calle Ñandú", "東京都渋谷区道玄坂", "Åsgatan", "Main St")
CITIES = ("Zürich", "Kraków", "São Paulo", "Reykjavík", "Springfield", "Malmö", "Dublin")
REASONS = ("insufficient funds", "card expired", "fraud check failed")


class Raw(str):
    """JSON text written as it is: keeps an amount's two decimals (`12.50`, not `12.5`)."""


def to_json(fields: dict) -> str:
    """A compact JSON object, as Jackson writes it (non-ASCII kept, `"` and `\\` escaped)."""
    return "{" + ",".join(
        json.dumps(k) + ":" + (v if isinstance(v, Raw) else json.dumps(v, ensure_ascii=False))
        for k, v in fields.items()) + "}"


class IdGenerator:
    """Eventuate's ApplicationIdGenerator: `%016x-%016x` of (time in ms, MAC << 16 | counter)."""

    def __init__(self, mac: int):
        self.mac, self.counters = mac & 0xFFFF_FFFF_FFFF, {}

    def next(self, ms: int) -> str:
        while self.counters.get(ms, 0) > 0xFFFF:  # counter used up in this ms: take the next
            ms += 1
        counter = self.counters.get(ms, 0)
        self.counters[ms] = counter + 1
        return f"{ms:016x}-{(self.mac << 16) | counter:016x}"


@dataclasses.dataclass(frozen=True)
class Record:
    """One Kafka record: topic, key (the aggregate id) and value (Eventuate's JSON envelope)."""
    topic: str
    key: str
    value: str
    event_id: str
    duplicate: bool = False


def money(cents: int) -> Raw:
    return Raw(f"{cents // 100}.{cents % 100:02d}")


def apply(rows: dict, source: str, event_type: str, payload: dict) -> None:
    """The reference view: fold one event into its order's row (columns as text or null)."""
    row = rows.setdefault(payload["orderId"], dict.fromkeys(COLUMNS))
    row["order_id"] = payload["orderId"]
    name = event_type.rsplit(".", 1)[1]
    if source == "order":
        if name == "OrderCreatedEvent":
            row.update(order_status="PENDING", customer_id=payload["customerId"],
                       product_id=payload["productId"], quantity=str(payload["quantity"]),
                       amount=str(payload["amount"]), shipping_address=payload["shippingAddress"])
        else:  # OrderApproved/Rejected/Cancelled/CompletedEvent
            row["order_status"] = name[len("Order"):-len("Event")].upper()
    elif source == "payment":
        if name == "PaymentCreatedEvent":
            row["payment_id"] = payload["paymentId"]
        row["payment_status"] = {"PaymentCreatedEvent": "PENDING", "PaymentApprovedEvent":
                                 "APPROVED", "PaymentRejectedEvent": "REJECTED"}[name]
    else:
        if name == "DeliveryCreatedEvent":
            row["delivery_id"] = payload["deliveryId"]
        row["delivery_status"] = {"DeliveryCreatedEvent": "READY", "DeliveryStartedEvent":
                                  "STARTED", "DeliveryCompletedEvent": "COMPLETED"}[name]


def generate(orders: int, seed: int, run_id: str, topics: dict = DEFAULT_TOPICS):
    """Every aggregate's events in life-cycle order, and the expected final view rows.

    Returns ({(source, aggregate id): [Record, ...]}, {order id: row}). Life cycles:
    5% cancelled right after creation (no payment, no delivery); 10% payment rejected, then
    order rejected (no delivery); 10% still in flight (the happy path cut short at a random
    step); the rest the whole happy path, ending with OrderCompletedEvent.
    """
    rng = random.Random(seed)
    # One "MAC address" per service, derived from the run id, so runs get distinct IDs.
    ids = {s: IdGenerator(int.from_bytes(hashlib.sha256(f"{run_id}/{s}".encode()).digest()[:6],
                                         "big")) for s in SOURCES}
    aggregates, rows, clock = {}, {}, BASE_MS

    for n in range(1, orders + 1):
        clock += rng.randint(1, 50)
        t = clock
        oid, pid, did = f"o-{run_id}-{n}", f"p-{run_id}-{n}", f"d-{run_id}-{n}"

        def emit(source: str, agg_id: str, name: str, **fields) -> None:
            nonlocal t
            t += rng.randint(1, 400)
            event_type, topic = f"com.example.{source}.{name}", topics[source]
            payload = {f"{source}Id": agg_id, **fields} if source != "order" else fields
            event_id = ids[source].next(t)
            headers = {"ID": event_id, "PARTITION_ID": agg_id, "DESTINATION": topic,
                       "DATE": formatdate(t / 1000, usegmt=True), "event-type": event_type,
                       "event-aggregate-type": topic, "event-aggregate-id": agg_id}
            value = json.dumps({"payload": to_json(payload), "headers": headers},
                               ensure_ascii=False, separators=(",", ":"))
            aggregates.setdefault((source, agg_id), []).append(Record(topic, agg_id, value, event_id))
            apply(rows, source, event_type, payload)

        cents = rng.randint(100, 99_999)
        address = (f"{rng.randint(1, 250)} {rng.choice(STREETS)}, "
                   f"{rng.randint(1000, 99999)} {rng.choice(CITIES)}")
        emit("order", oid, "OrderCreatedEvent", orderId=oid,
             customerId=f"c-{rng.randint(1, max(1, orders // 3))}",
             productId=f"prod-{rng.randint(1, 50)}", quantity=rng.randint(1, 9),
             amount=money(cents), shippingAddress=address)
        fate = rng.random()
        if fate < 0.05:
            emit("order", oid, "OrderCancelledEvent", orderId=oid)
            continue
        emit("payment", pid, "PaymentCreatedEvent", orderId=oid, amount=money(cents))
        if fate < 0.15:
            reason = rng.choice(REASONS)
            emit("payment", pid, "PaymentRejectedEvent", orderId=oid, reason=reason)
            emit("order", oid, "OrderRejectedEvent", orderId=oid, reason=reason)
            continue
        happy = [("payment", pid, "PaymentApprovedEvent"), ("order", oid, "OrderApprovedEvent"),
                 ("delivery", did, "DeliveryCreatedEvent"), ("delivery", did, "DeliveryStartedEvent"),
                 ("delivery", did, "DeliveryCompletedEvent"), ("order", oid, "OrderCompletedEvent")]
        if fate < 0.25:  # in flight: stops somewhere before the end
            happy = happy[:rng.randrange(len(happy))]
        for source, agg_id, name in happy:
            emit(source, agg_id, name, orderId=oid)
    return aggregates, rows


def schedule(aggregates: dict, threads: int, duplicates: float, seed: int) -> list[list[Record]]:
    """Each producer thread's records, in sending order.

    An aggregate belongs to one thread (by a CRC-32 of its id), so its events keep their order.
    A thread interleaves its aggregates at random (so sources mix: a payment may come before its
    order's creation), and sends each chosen duplicate again at a random later point.
    """
    rng = random.Random(f"{seed}/schedule")
    owned = [[] for _ in range(threads)]
    for (_, agg_id), events in aggregates.items():
        owned[zlib.crc32(agg_id.encode()) % threads].append(deque(events))
    plans = []
    for queues in owned:
        originals = []
        while queues:
            i = rng.randrange(len(queues))
            originals.append(queues[i].popleft())
            if not queues[i]:
                queues[i] = queues[-1]
                queues.pop()
        keyed = [(float(i), r) for i, r in enumerate(originals)]
        keyed += [(rng.uniform(i, len(originals)) + 0.5, dataclasses.replace(r, duplicate=True))
                  for i, r in enumerate(originals) if rng.random() < duplicates]
        plans.append([r for _, r in sorted(keyed, key=lambda kr: kr[0])])
    return plans


def create_topics(brokers: str, topics: list[str], partitions: int) -> None:
    """Create the topics (replication 1); ones that exist already are left as they are."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": brokers})
    futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                   for t in topics], operation_timeout=30)
    for future in futures.values():
        try:
            future.result(60)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def send(brokers: str, plans: list[list[Record]], timeout: float) -> list[str]:
    """Send each plan from its own thread and Producer; returns the failures (empty: all acked)."""
    from confluent_kafka import Producer
    failures, lock = [], threading.Lock()

    def fail(what: str) -> None:
        with lock:
            failures.append(what)

    def run(n: int, records: list[Record]) -> None:
        try:
            producer = Producer({"bootstrap.servers": brokers, "client.id": f"eventuate-service-{n}",
                                 "enable.idempotence": True, "acks": "all", "linger.ms": 5,
                                 "message.timeout.ms": int(timeout * 1000)})

            def report(err, msg) -> None:
                if err is not None:
                    fail(f"{msg.topic()}/{msg.key()!r}: {err}")

            for r in records:
                while True:
                    try:
                        producer.produce(r.topic, key=r.key.encode(), value=r.value.encode(),
                                         on_delivery=report)
                        break
                    except BufferError:  # local queue full: serve delivery reports, retry
                        producer.poll(0.1)
                producer.poll(0)
            left = producer.flush(timeout + 5)
            if left:
                fail(f"thread {n}: {left} records not delivered")
        except Exception as e:  # noqa: BLE001 - any error fails the run
            fail(f"thread {n}: {e!r}")

    workers = [threading.Thread(target=run, args=(n, p)) for n, p in enumerate(plans)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--brokers", default="127.0.0.1:9092")
    ap.add_argument("--orders", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=3, help="producer threads (one Producer each)")
    ap.add_argument("--duplicates", type=float, default=0.1,
                    help="fraction of events sent a second time, later, with the same ID")
    ap.add_argument("--seed", type=int, default=None, help="default: random (printed)")
    ap.add_argument("--run-id", default=None, help="part of every id; default: random")
    ap.add_argument("--expected", metavar="FILE", help="write the expected view rows as JSON")
    for s in SOURCES:
        ap.add_argument(f"--{s}-topic", default=DEFAULT_TOPICS[s])
    ap.add_argument("--create-topics", type=int, metavar="P", help="create the topics with P partitions first")
    ap.add_argument("--timeout", type=float, default=60, help="seconds a record may take to be acked")
    ap.add_argument("--dry-run", action="store_true", help="print the records as JSON lines, send nothing")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.orders < 0 or not 0 <= args.duplicates <= 1:
        ap.error("need --threads >= 1, --orders >= 0 and 0 <= --duplicates <= 1")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    run_id = args.run_id or secrets.token_hex(4)
    topics = {s: getattr(args, f"{s}_topic") for s in SOURCES}

    aggregates, rows = generate(args.orders, seed, run_id, topics)
    plans = schedule(aggregates, args.threads, args.duplicates, seed)
    events = sum(len(e) for e in aggregates.values())
    sent = sum(len(p) for p in plans)
    if args.expected:
        with open(args.expected, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "events": events, "sent": sent, "seed": seed,
                       "run_id": run_id, "topics": topics}, f, ensure_ascii=False, indent=1)

    started, failures = time.monotonic(), []
    if args.dry_run:
        for n, plan in enumerate(plans):
            for r in plan:
                print(json.dumps({"thread": n, "topic": r.topic, "key": r.key, "value": r.value,
                                  "duplicate": r.duplicate}, ensure_ascii=False))
    else:
        try:
            if args.create_topics:
                create_topics(args.brokers, list(topics.values()), args.create_topics)
        except Exception as e:  # noqa: BLE001
            failures = [f"creating topics: {e!r}"]
        failures = failures or send(args.brokers, plans, args.timeout)
    for what in failures[:20]:
        print(f"produce.py: failed: {what}", file=sys.stderr)
    print(f"produce.py: {'printed' if args.dry_run else 'produced'} {events} events + "
          f"{sent - events} duplicates = {sent} records on {args.threads} threads in "
          f"{time.monotonic() - started:.2f} s (seed {seed}, run id {run_id}"
          f"{f', {len(failures)} FAILED' if failures else ''})", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

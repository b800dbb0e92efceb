"""app.runtime.broker against the real RabbitMQ at MICROSHOP_TEST_AMQP_URL (CI sets it to a
throw-away vhost; elsewhere these tests skip where it is unset). Each test has its own
exchange and queues, deleted afterwards; outages go through a TcpProxy, never the server."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker
from support import ROOT
from tcp_proxy import TcpProxy

from app.runtime.broker import ATTEMPTS, Broker, BrokerUnavailable, Message, Outcome

AMQP_URL = os.environ.get("MICROSHOP_TEST_AMQP_URL") or None
DELAYS = (0.3, 0.6)


@pytest.fixture
def amqp_url() -> str:
    if AMQP_URL is None:
        if os.environ.get("CI"):
            pytest.fail("CI must set MICROSHOP_TEST_AMQP_URL: no skipping RabbitMQ")
        pytest.skip("MICROSHOP_TEST_AMQP_URL is not set")
    return AMQP_URL


@dataclass
class Names:
    """This test's exchange and queues, and everything to delete after it."""

    url: str
    exchange: str = field(default_factory=lambda: f"test.{uuid.uuid4().hex[:10]}")
    queues: list[str] = field(default_factory=list)

    def queue(self) -> str:
        name = f"test_{uuid.uuid4().hex[:10]}"
        self.queues.append(name)
        return name

    def broker(self, url: str | None = None, **options) -> Broker:
        options.setdefault("retry_delays", DELAYS)
        return Broker(url or self.url, exchange=self.exchange, **options)

    def delete(self) -> None:
        with pika.BlockingConnection(pika.URLParameters(self.url)) as connection:
            channel = connection.channel()
            for queue in self.queues:
                for name in (queue, f"{queue}.dead", *(f"{queue}.retry.{d:g}s" for d in DELAYS)):
                    channel.queue_delete(name)
            channel.exchange_delete(self.exchange)
            channel.exchange_delete(f"{self.exchange}.dead")


@pytest.fixture
def names(amqp_url: str) -> Iterator[Names]:
    names = Names(amqp_url)
    yield names
    names.delete()


def message(topic: str = "order.cancelled", attempts: int = 0) -> Message:
    event_id = str(uuid.uuid4())
    return Message(event_id, topic, f'{{"id": "{event_id}"}}'.encode(), attempts)


def ready_count(url: str, queue: str) -> int:
    """Messages ready in ``queue`` (not those delivered and unacked)."""
    with pika.BlockingConnection(pika.URLParameters(url)) as connection:
        return connection.channel().queue_declare(queue, passive=True).method.message_count


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Recorder:
    """A handler that records what it saw and answers ``outcome(message)``."""

    def __init__(self, outcome: Callable[[Message], Outcome] = lambda _: Outcome.DONE):
        self.outcome = outcome
        self.seen: list[tuple[Message, float]] = []
        self.lock = threading.Lock()

    def __call__(self, message: Message) -> Outcome:
        with self.lock:
            self.seen.append((message, time.monotonic()))
        return self.outcome(message)

    def ids(self) -> list[str]:
        with self.lock:
            return [seen.id for seen, _ in self.seen]


def test_publish_is_confirmed_and_persistent(names: Names):
    broker = names.broker()
    queue = names.queue()
    broker.declare(queue, {"order.cancelled"})
    sent = [message(), message()]
    broker.publish(sent)
    broker.close()

    with pika.BlockingConnection(pika.URLParameters(names.url)) as connection:
        channel = connection.channel()
        declared = channel.queue_declare(queue, passive=True)
        assert declared.method.message_count == 2
        for expected in sent:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            assert method.routing_key == "order.cancelled"
            assert properties.delivery_mode == 2
            assert properties.message_id == expected.id
            assert properties.content_type == "application/json"
            assert properties.headers[ATTEMPTS] == 0
            assert body == expected.body
        with pytest.raises(ChannelClosedByBroker):  # durable: redeclaring it otherwise fails
            channel.queue_declare(queue, durable=False)


def test_publish_to_a_topic_no_queue_takes_raises(names: Names):
    broker = names.broker()
    queue = names.queue()
    broker.declare(queue, {"order.cancelled"})
    taken, lost = message(), message("nobody.listens")
    with pytest.raises(BrokerUnavailable) as raised:
        broker.publish([taken, lost])
    broker.close()
    assert raised.value.unroutable == (lost.id,)
    assert raised.value.confirmed == (taken.id,)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_publish_to_an_unreachable_broker_raises_quickly():
    broker = Broker(f"amqp://guest:guest@127.0.0.1:{free_port()}/", connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        broker.publish([message()])
    assert time.monotonic() - started < 1.5


def test_publish_to_a_broker_that_never_answers_raises_after_connect_timeout():
    silent = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never speaks AMQP
    try:
        broker = Broker(
            f"amqp://guest:guest@127.0.0.1:{silent.getsockname()[1]}/", connect_timeout=1
        )
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            broker.publish([message()])
        assert time.monotonic() - started < 3
    finally:
        silent.close()


CONSUMER_SCRIPT = """
import sys, time
from app.runtime.broker import Broker, Outcome

def handle(message):
    print("handling", message.id, flush=True)
    time.sleep(600)
    return Outcome.DONE

url, exchange, queue = sys.argv[1:4]
Broker(url, exchange=exchange, retry_delays=(0.3, 0.6)).consume(queue, {"order.cancelled"}, handle)
time.sleep(600)
"""


def test_a_consumer_killed_mid_handle_leaves_the_message_to_be_delivered_again(names: Names):
    queue = names.queue()
    broker = names.broker()
    broker.declare(queue, {"order.cancelled"})
    sent = message()
    broker.publish([sent])
    process = subprocess.Popen(
        [sys.executable, "-c", CONSUMER_SCRIPT, names.url, names.exchange, queue],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().split() == ["handling", sent.id]
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()

    recorder = Recorder()
    consumer = broker.consume(queue, {"order.cancelled"}, recorder)
    wait_for(lambda: recorder.ids() == [sent.id])
    consumer.stop()
    broker.close()
    assert ready_count(names.url, queue) == 0


def test_retry_comes_back_after_the_delay_with_one_more_attempt(names: Names):
    queue = names.queue()
    broker = names.broker()
    recorder = Recorder(lambda m: Outcome.RETRY if m.attempts < 3 else Outcome.DONE)
    consumer = broker.consume(queue, {"order.cancelled"}, recorder)
    assert consumer.wait_consuming(10)
    sent = message()
    broker.publish([sent])
    wait_for(lambda: len(recorder.seen) == 4)
    consumer.stop()
    broker.close()

    assert [(m.id, m.topic, m.body, m.attempts) for m, _ in recorder.seen] == [
        (sent.id, sent.topic, sent.body, attempts) for attempts in range(4)
    ]
    times = [at for _, at in recorder.seen]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps[0] >= 0.3
    assert gaps[0] < 0.6
    assert gaps[1] >= 0.6
    assert gaps[2] >= 0.6


def test_a_handler_that_raises_is_retried_and_logged_once_with_the_cause(names: Names, caplog):
    queue = names.queue()
    broker = names.broker()

    def handle(m: Message) -> Outcome:
        if m.attempts == 0:
            raise ValueError("the ledger is locked")
        return Outcome.DONE

    recorder = Recorder()
    consumer = broker.consume(queue, {"order.cancelled"}, lambda m: (recorder(m), handle(m))[1])
    assert consumer.wait_consuming(10)
    broker.publish([message()])
    wait_for(lambda: [m.attempts for m, _ in recorder.seen] == [0, 1])
    consumer.stop()
    broker.close()
    failures = [r for r in caplog.records if r.name == "microshop.broker"]
    assert len(failures) == 1
    assert "the ledger is locked" in str(failures[0].exc_info[1])


def test_dead_letters_wait_in_the_dead_queue_while_the_others_flow_and_come_back(names: Names):
    queue = names.queue()
    broker = names.broker(prefetch=1)
    broker.declare(queue, {"order.cancelled"})
    poison, *others = [message() for _ in range(6)]
    fixed = threading.Event()
    recorder = Recorder(
        lambda m: Outcome.DONE if m.id != poison.id or fixed.is_set() else Outcome.DEAD
    )
    broker.publish([poison, *others])
    consumer = broker.consume(queue, {"order.cancelled"}, recorder)
    wait_for(lambda: len(recorder.seen) == 6)
    assert recorder.ids() == [poison.id, *(m.id for m in others)]

    wait_for(lambda: len(broker.dead_letters(queue)) == 1)
    [dead] = broker.dead_letters(queue)
    assert (dead.id, dead.topic, dead.body) == (poison.id, poison.topic, poison.body)
    assert len(broker.dead_letters(queue)) == 1  # looking leaves it there

    assert broker.retry_dead(queue, "no-such-id") is False
    fixed.set()
    assert broker.retry_dead(queue, poison.id) is True
    wait_for(lambda: len(recorder.seen) == 7)
    again, _ = recorder.seen[-1]
    assert (again.id, again.topic, again.attempts) == (poison.id, poison.topic, 0)
    assert broker.dead_letters(queue) == []
    consumer.stop()
    broker.close()


def test_dead_letters_of_a_queue_never_declared_are_none(names: Names):
    broker = names.broker()
    assert broker.dead_letters(names.queue()) == []
    assert broker.retry_dead(names.queue(), "x") is False


def test_no_more_than_prefetch_messages_are_in_hand(names: Names):
    queue = names.queue()
    broker = names.broker(prefetch=3)
    broker.declare(queue, {"order.cancelled"})
    release = threading.Event()
    recorder = Recorder(lambda _: (release.wait(30), Outcome.DONE)[1])
    broker.publish([message() for _ in range(10)])
    consumer = broker.consume(queue, {"order.cancelled"}, recorder)
    wait_for(lambda: len(recorder.seen) == 1)
    time.sleep(0.5)  # time enough for the broker to send more, were it allowed
    assert ready_count(names.url, queue) == 7
    release.set()
    wait_for(lambda: len(recorder.seen) == 10)
    consumer.stop()
    broker.close()
    assert ready_count(names.url, queue) == 0


def test_an_exclusive_queue_goes_when_its_consumer_stops(names: Names):
    broker = names.broker()
    recorder = Recorder()
    consumer = broker.consume("", {"token.revoked"}, recorder, exclusive=True, name="revocations")
    assert consumer.wait_consuming(10)
    own_queue = consumer.topology.queue
    sent = message("token.revoked")
    broker.publish([sent])
    wait_for(lambda: recorder.ids() == [sent.id])
    consumer.stop()
    assert not consumer.running
    broker.close()
    with (
        pika.BlockingConnection(pika.URLParameters(names.url)) as connection,
        pytest.raises(ChannelClosedByBroker) as raised,
    ):
        connection.channel().queue_declare(own_queue, passive=True)
    assert raised.value.reply_code == 404


def test_two_consumers_of_one_queue_share_its_messages(names: Names):
    queue = names.queue()
    broker = names.broker(prefetch=2)
    broker.declare(queue, {"payment.succeeded"})
    handled: list[tuple[str, str]] = []
    lock = threading.Lock()

    def handler(name: str) -> Callable[[Message], Outcome]:
        def handle(m: Message) -> Outcome:
            with lock:
                handled.append((name, m.id))
            time.sleep(0.01)
            return Outcome.DONE

        return handle

    first = broker.consume(queue, {"payment.succeeded"}, handler("first"))
    second = broker.consume(queue, {"payment.succeeded"}, handler("second"))
    assert first.wait_consuming(10)
    assert second.wait_consuming(10)
    sent = [message("payment.succeeded") for _ in range(40)]
    broker.publish(sent)
    wait_for(lambda: len(handled) == 40)
    time.sleep(0.3)
    first.stop()
    second.stop()
    broker.close()
    assert sorted(event_id for _, event_id in handled) == sorted(m.id for m in sent)
    assert {name for name, _ in handled} == {"first", "second"}


def through(proxy: TcpProxy, url: str) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{proxy.port}"))


def test_a_broker_outage_loses_nothing_and_logs_one_warning_each_way(names: Names, caplog):
    caplog.set_level(logging.INFO)
    queue = names.queue()
    target = urlsplit(names.url)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5672) as proxy:
        broker = names.broker(through(proxy, names.url), connect_timeout=1)
        recorder = Recorder()
        consumer = broker.consume(queue, {"payment.succeeded"}, recorder, name="orders")
        assert consumer.wait_consuming(10)
        outbox = [message("payment.succeeded") for _ in range(60)]
        refused = 0
        cut_at, restore_at = 20, 40
        for number, event in enumerate(list(outbox)):
            if number == cut_at:
                proxy.cut()
            if number == restore_at:
                time.sleep(3)
                proxy.restore()
            try:
                broker.publish([event])
            except BrokerUnavailable:
                refused += 1
                continue
            outbox.remove(event)
            time.sleep(0.02)
        assert refused == restore_at - cut_at
        broker.publish(outbox)  # what the outbox kept, once the broker is back
        wait_for(lambda: len(set(recorder.ids())) == 60, timeout=30)
        consumer.stop()
        broker.close()

    logged = [r for r in caplog.records if r.name.startswith(("microshop", "pika"))]
    assert [r.levelno for r in logged] == [logging.WARNING, logging.WARNING]
    assert "orders lost the broker" in logged[0].getMessage()
    assert "orders is back on the broker" in logged[1].getMessage()
    assert all(r.exc_info is None for r in logged)


def test_a_handler_longer_than_the_heartbeat_keeps_the_connection(names: Names, caplog):
    queue = names.queue()
    broker = names.broker(heartbeat=1)
    recorder = Recorder(lambda _: (time.sleep(3.5), Outcome.DONE)[1])
    consumer = broker.consume(queue, {"order.cancelled"}, recorder)
    assert consumer.wait_consuming(10)
    broker.publish([message()])
    wait_for(lambda: len(recorder.seen) == 1)
    time.sleep(4)
    consumer.stop()
    broker.close()
    assert len(recorder.seen) == 1  # acked on the connection it came by: not delivered again
    assert [r for r in caplog.records if r.name == "microshop.broker"] == []
    assert ready_count(names.url, queue) == 0


def test_an_exclusive_queue_retries_through_its_own_delay_queues(names: Names):
    broker = names.broker()
    recorder = Recorder(lambda m: Outcome.RETRY if m.attempts == 0 else Outcome.DONE)
    consumer = broker.consume("", {"token.revoked"}, recorder, exclusive=True)
    assert consumer.wait_consuming(10)
    sent = message("token.revoked")
    broker.publish([sent])
    wait_for(lambda: len(recorder.seen) == 2)
    consumer.stop()
    broker.close()
    assert [(m.id, m.topic, m.attempts) for m, _ in recorder.seen] == [
        (sent.id, "token.revoked", 0),
        (sent.id, "token.revoked", 1),
    ]

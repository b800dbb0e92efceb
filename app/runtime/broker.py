"""microshop's RabbitMQ transport: confirmed publishes, consumers that ack after handling,
delayed retries and a dead-letter queue per service queue.

    broker = Broker("amqp://guest:guest@127.0.0.1:5672/%2F")
    broker.declare("order", {"payment.succeeded", "payment.refunded"})
    broker.publish([Message(id=event_id, topic="payment.succeeded", body=b"{...}")])
    consumer = broker.consume("order", {"payment.succeeded"}, handle)  # -> Outcome
    broker.dead_letters("order"); broker.retry_dead("order", event_id)
    consumer.stop(); broker.close()

pika's ``BlockingConnection`` is not thread-safe (pika#1237, #698), so every connection
here belongs to one thread: publishes share one connection behind a lock, and each
consumer thread opens its own. A handler runs in a worker thread while the consumer
thread keeps the connection's heartbeats answered (pika#1104). See docs/broker.md for
the topology and why pika.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum

import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.adapters.utils.connection_workflow import AMQPConnectorException
from pika.exceptions import AMQPError, ChannelClosedByBroker, NackError, UnroutableError
from pika.spec import Basic, BasicProperties

log = logging.getLogger("microshop.broker")
ATTEMPTS = "x-attempts"
"""The header that counts a message's failed handlings."""
RECONNECT_FIRST = 1.0
RECONNECT_AT_MOST = 30.0
POLL = 0.2
"""Seconds between looks at the stop flag and the handler while the connection is served."""
PERSISTENT = 2
NOT_FOUND = 404
BROKEN = (AMQPError, AMQPConnectorException, OSError)
"""What a lost, refused or closed connection raises."""


@dataclass(frozen=True)
class Message:
    id: str
    """The event id: the AMQP message_id, and the key consumers deduplicate on."""
    topic: str
    """The routing key on the topic exchange, e.g. ``payment.succeeded``."""
    body: bytes
    """JSON, opaque to the broker."""
    attempts: int = 0
    """Failed handlings before this delivery."""


class Outcome(Enum):
    DONE = "done"
    """Acked."""
    RETRY = "retry"
    """Delivered again after a delay that grows with the attempts."""
    DEAD = "dead"
    """Rejected: the queue's dead-letter exchange puts it in ``<queue>.dead``."""


class BrokerUnavailable(Exception):
    """The broker cannot be reached, or did not confirm every message.

    ``confirmed`` holds the ids the broker did confirm before the failure, so a caller
    may mark those sent; ``unroutable`` the ids that no queue was bound to take."""

    def __init__(
        self, message: str, *, confirmed: Sequence[str] = (), unroutable: Sequence[str] = ()
    ):
        super().__init__(message)
        self.confirmed = tuple(confirmed)
        self.unroutable = tuple(unroutable)


def describe(error: BaseException) -> str:
    """One line that says what went wrong, for a warning."""
    text = str(error).strip() or repr(error)
    return f"{type(error).__name__}: {text}"


def properties_of(message: Message) -> BasicProperties:
    return BasicProperties(
        content_type="application/json",
        delivery_mode=PERSISTENT,
        message_id=message.id,
        type=message.topic,
        headers={ATTEMPTS: message.attempts},
    )


def message_of(
    method: Basic.Deliver | Basic.GetOk, properties: BasicProperties, body: bytes
) -> Message:
    headers = properties.headers or {}
    return Message(
        id=properties.message_id or "",
        topic=properties.type or method.routing_key,
        body=body,
        attempts=int(headers.get(ATTEMPTS, 0)),
    )


@dataclass(frozen=True)
class Topology:
    """The names of one consumer's queues."""

    queue: str
    delay_queues: tuple[str, ...]
    dead_queue: str | None = None


class Broker:
    """microshop's connection to RabbitMQ: publishing is safe from several threads;
    each consumer runs in a thread of its own."""

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "microshop.events",
        prefetch: int = 16,
        retry_delays: Sequence[float] = (1, 5, 30, 120),
        connect_timeout: float = 5.0,
        heartbeat: int = 30,
    ):
        if not retry_delays or any(delay <= 0 for delay in retry_delays):
            raise ValueError("retry_delays must be positive numbers of seconds")
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        self.url = url
        self.exchange = exchange
        self.dead_exchange = f"{exchange}.dead"
        self.prefetch = prefetch
        self.retry_delays = tuple(retry_delays)
        self.parameters = pika.URLParameters(url)
        self.parameters.socket_timeout = connect_timeout
        self.parameters.stack_timeout = connect_timeout
        self.parameters.connection_attempts = 1
        self.parameters.heartbeat = heartbeat
        """A connection whose broker stopped answering is closed after this long."""
        self.parameters.blocked_connection_timeout = max(heartbeat, connect_timeout)
        self._publishing = threading.Lock()
        self._publisher: tuple[BlockingConnection, BlockingChannel] | None = None
        self._consumers: list[Consumer] = []
        pika_log = logging.getLogger("pika")
        if pika_log.level == logging.NOTSET:  # this module logs each outage once
            pika_log.setLevel(logging.CRITICAL)

    def connect(self) -> BlockingConnection:
        """A new connection, which belongs to the calling thread."""
        try:
            return pika.BlockingConnection(self.parameters)
        except BROKEN as error:
            raise BrokerUnavailable(f"cannot reach the broker: {describe(error)}") from error

    @contextmanager
    def _channel(self) -> Iterator[BlockingChannel]:
        """A short-lived connection's channel, in confirm mode."""
        connection = self.connect()
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            yield channel
        except BROKEN as error:
            raise BrokerUnavailable(f"the broker failed: {describe(error)}") from error
        finally:
            close_quietly(connection)

    def declare(self, queue: str, topics: Collection[str]) -> None:
        """Idempotently declare the exchange, ``queue`` bound to ``topics``, its
        dead-letter queue ``<queue>.dead`` and its delay queues."""
        with self._channel() as channel:
            self.declare_on(channel, queue, topics)

    def declare_on(
        self, channel: BlockingChannel, queue: str, topics: Collection[str], exclusive: bool = False
    ) -> Topology:
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        if exclusive:
            name = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
            delay_names = [f"microshop.retry.{uuid.uuid4().hex}.{n}" for n in self.retry_delays]
            dead = None
        else:
            channel.exchange_declare(self.dead_exchange, exchange_type="direct", durable=True)
            dead = f"{queue}.dead"
            channel.queue_declare(dead, durable=True)
            channel.queue_bind(dead, self.dead_exchange, routing_key=queue)
            channel.queue_declare(
                queue,
                durable=True,
                arguments={
                    "x-dead-letter-exchange": self.dead_exchange,
                    "x-dead-letter-routing-key": queue,
                },
            )
            name = queue
            delay_names = [f"{queue}.retry.{delay:g}s" for delay in self.retry_delays]
        for delay, delay_name in zip(self.retry_delays, delay_names, strict=True):
            channel.queue_declare(
                delay_name,
                durable=not exclusive,
                exclusive=exclusive,
                arguments={
                    "x-message-ttl": round(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": name,
                },
            )
        for topic in topics:
            channel.queue_bind(name, self.exchange, routing_key=topic)
        return Topology(name, tuple(delay_names), dead)

    def publish(self, messages: Sequence[Message]) -> None:
        """Persistent messages, each confirmed by the broker before this returns;
        ``BrokerUnavailable`` if any is not (the caller keeps them and tries again)."""
        if not messages:
            return
        with self._publishing:
            confirmed: list[str] = []
            unroutable: list[str] = []
            reused = self._publisher is not None
            try:
                self._publish_all(messages, confirmed, unroutable)
            except BROKEN as error:
                self._drop_publisher()
                if not reused:
                    raise BrokerUnavailable(
                        f"the broker did not confirm: {describe(error)}", confirmed=confirmed
                    ) from error
                # an idle connection the broker closed meanwhile: once more on a new one
                try:
                    self._publish_all(messages[len(confirmed) :], confirmed, unroutable)
                except BROKEN as again:
                    self._drop_publisher()
                    raise BrokerUnavailable(
                        f"the broker did not confirm: {describe(again)}", confirmed=confirmed
                    ) from again
            if unroutable:
                raise BrokerUnavailable(
                    f"no queue is bound to take {len(unroutable)} message(s)"
                    f" (topics {sorted({m.topic for m in messages if m.id in unroutable})})",
                    confirmed=[i for i in confirmed if i not in unroutable],
                    unroutable=unroutable,
                )

    def _publish_all(
        self, messages: Sequence[Message], confirmed: list[str], unroutable: list[str]
    ) -> None:
        channel = self._publishing_channel()
        for message in messages:
            try:
                channel.basic_publish(
                    self.exchange,
                    message.topic,
                    message.body,
                    properties_of(message),
                    mandatory=True,
                )
            except UnroutableError:
                unroutable.append(message.id)
            except NackError as error:
                raise BrokerUnavailable(
                    f"the broker refused message {message.id}", confirmed=confirmed
                ) from error
            confirmed.append(message.id)

    def _publishing_channel(self) -> BlockingChannel:
        if self._publisher is not None:
            connection, channel = self._publisher
            connection.process_data_events(0)  # learn now of a close the broker sent
            if channel.is_open:
                return channel
            self._drop_publisher()
        connection = self.connect()
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        except BaseException:
            close_quietly(connection)
            raise
        self._publisher = (connection, channel)
        return channel

    def _drop_publisher(self) -> None:
        if self._publisher is not None:
            close_quietly(self._publisher[0])
            self._publisher = None

    def consume(
        self,
        queue: str,
        topics: Collection[str],
        handle: Callable[[Message], Outcome],
        *,
        exclusive: bool = False,
        name: str | None = None,
    ) -> Consumer:
        """Start a daemon thread that declares ``queue`` and hands its messages to
        ``handle``, acking each only after ``handle`` returned."""
        consumer = Consumer(self, queue, topics, handle, exclusive=exclusive, name=name)
        self._consumers.append(consumer)
        consumer.start()
        return consumer

    def dead_letters(self, queue: str) -> list[Message]:
        """What sits in ``<queue>.dead``, left where it is."""
        with self._channel() as channel:
            return [message for _, message in self._browse(channel, f"{queue}.dead")]

    def retry_dead(self, queue: str, message_id: str) -> bool:
        """Move one dead letter back to ``queue`` with its attempts reset; False if absent."""
        with self._channel() as channel:
            for tag, message in self._browse(channel, f"{queue}.dead"):
                if message.id == message_id:
                    fresh = Message(message.id, message.topic, message.body, attempts=0)
                    channel.basic_publish("", queue, message.body, properties_of(fresh), True)
                    channel.basic_ack(tag)
                    return True
        return False

    @staticmethod
    def _browse(channel: BlockingChannel, queue: str) -> Iterator[tuple[int, Message]]:
        """Each message of ``queue``, unacked: closing the channel puts them all back."""
        try:
            count = channel.queue_declare(queue, passive=True).method.message_count
        except ChannelClosedByBroker as error:
            if error.reply_code == NOT_FOUND:
                return
            raise
        for _ in range(count):
            method, properties, body = channel.basic_get(queue, auto_ack=False)
            if method is None:
                return
            yield method.delivery_tag, message_of(method, properties, body)

    def close(self) -> None:
        """Stop the consumers this broker started and close the publishing connection."""
        for consumer in self._consumers:
            consumer.stop()
        self._consumers.clear()
        with self._publishing:
            self._drop_publisher()


def close_quietly(connection: BlockingConnection) -> None:
    try:
        if connection.is_open:
            connection.close()
    except BROKEN:
        pass


@dataclass
class Outage:
    """A consumer's time without the broker: logged when it starts and when it ends."""

    name: str
    started: float | None = None
    wait: float = RECONNECT_FIRST
    clock: Callable[[], float] = field(default=time.monotonic)

    def failed(self, error: BaseException) -> float:
        """Seconds to wait before the next attempt."""
        if self.started is None:
            self.started = self.clock()
            self.wait = RECONNECT_FIRST
            log.warning(
                "%s lost the broker (%s); reconnecting with back-off up to %g s",
                self.name,
                describe(error),
                RECONNECT_AT_MOST,
            )
        else:
            self.wait = min(2 * self.wait, RECONNECT_AT_MOST)
        return self.wait

    def connected(self) -> None:
        if self.started is not None:
            log.warning(
                "%s is back on the broker after %.1f s", self.name, self.clock() - self.started
            )
        self.started = None


class Consumer:
    """A daemon thread that consumes one queue until stopped, reconnecting as needed."""

    def __init__(
        self,
        broker: Broker,
        queue: str,
        topics: Collection[str],
        handle: Callable[[Message], Outcome],
        *,
        exclusive: bool = False,
        name: str | None = None,
    ):
        self.broker = broker
        self.queue = queue
        self.topics = tuple(topics)
        self.handle = handle
        self.exclusive = exclusive
        self.name = name or f"consumer-{queue or 'exclusive'}"
        self.topology: Topology | None = None
        """The queues of the current connection (an exclusive queue's name changes)."""
        self._stop = threading.Event()
        self._consuming = threading.Event()
        self._outage = Outage(self.name)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-handler")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def wait_consuming(self, timeout: float) -> bool:
        """True once the consumer is connected and its queues declared."""
        return self._consuming.wait(timeout)

    def stop(self) -> None:
        """Stop after the message in hand, and join the thread."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        self._worker.shutdown(wait=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                connection = self.broker.connect()
            except BrokerUnavailable as error:
                self._stop.wait(self._outage.failed(error.__cause__ or error))
                continue
            try:
                self._consume(connection)
            except BROKEN as error:
                if not self._stop.is_set():
                    self._stop.wait(self._outage.failed(error))
            except Exception:  # a bug here must not end the thread unseen
                log.exception("%s failed; it starts again in %g s", self.name, RECONNECT_AT_MOST)
                self._stop.wait(RECONNECT_AT_MOST)
            finally:
                self._consuming.clear()
                close_quietly(connection)

    def _consume(self, connection: BlockingConnection) -> None:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=self.broker.prefetch)
        self.topology = self.broker.declare_on(channel, self.queue, self.topics, self.exclusive)
        retries = connection.channel()
        retries.confirm_delivery()
        self._outage.connected()
        self._consuming.set()
        for method, properties, body in channel.consume(
            self.topology.queue, inactivity_timeout=POLL
        ):
            if self._stop.is_set():
                break
            if method is None:
                continue
            message = message_of(method, properties, body)
            outcome = self._handled(connection, message)
            self._settle(channel, retries, method.delivery_tag, message, outcome)
        channel.cancel()  # the prefetched messages not handled go back to the queue

    def _handled(self, connection: BlockingConnection, message: Message) -> Outcome:
        """``handle(message)`` in the worker thread, while this thread serves the connection."""
        future: Future[Outcome] = self._worker.submit(self.handle, message)
        try:
            while not future.done():
                connection.process_data_events(POLL)
        finally:
            # the connection may fail meanwhile: the handling still ends before anything else
            error = future.exception()
        if error is not None:
            log.error(
                "%s: handling %s (%s) failed; it is retried",
                self.name,
                message.id,
                message.topic,
                exc_info=error,
            )
            return Outcome.RETRY
        outcome = future.result()
        if not isinstance(outcome, Outcome):
            log.error(
                "%s: handling %s returned %r, not an Outcome; it is retried",
                self.name,
                message.id,
                outcome,
            )
            return Outcome.RETRY
        return outcome

    def _settle(
        self,
        channel: BlockingChannel,
        retries: BlockingChannel,
        tag: int,
        message: Message,
        outcome: Outcome,
    ) -> None:
        if outcome is Outcome.DONE:
            channel.basic_ack(tag)
        elif outcome is Outcome.DEAD:
            if self.exclusive:
                log.warning("%s: %s (%s) is dropped", self.name, message.id, message.topic)
            channel.basic_reject(tag, requeue=False)
        else:
            assert self.topology is not None
            index = min(message.attempts, len(self.topology.delay_queues) - 1)
            later = Message(message.id, message.topic, message.body, message.attempts + 1)
            retries.basic_publish(
                "", self.topology.delay_queues[index], message.body, properties_of(later), True
            )
            channel.basic_ack(tag)

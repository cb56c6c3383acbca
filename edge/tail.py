"""``edge tail``: the reference consumer of the edge's MQTT batches.

It subscribes to ``<prefix>/<site>/<line>/events`` (and the status topic),
decodes every batch (:func:`edge.wire.decode_batch`), checks the sequence
(:class:`SequenceChecker`) and prints one line per event::

    edge tail --config line.toml                      # the broker and topics of a line config
    edge tail --host mes-broker --topic 'edge/+/+/events' --json

Continuity is what the MES must check too: per edge and epoch the sequence
numbers run 1, 2, 3, ... across batches; a batch whose id was seen before is a
harmless resend (dropped); a number seen again under a *new* batch id, a gap,
numbers going backwards, or a batch whose events do not run exactly from its
``seq_first`` to its ``seq_last`` (a hole or an extra event inside it) are
reported on stderr. With ``--session`` the
broker keeps a persistent session for this consumer, so batches published
while it was disconnected are delivered when it comes back.

Exit status: 0, or 3 when a gap or a bad duplicate was seen; 1 when it could
not connect at all within ``--timeout``; 78 for an invalid ``--config``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import aiomqtt

from edge.errors import ConfigError
from edge.forward.mqtt.connection import ClientSettings, ProtocolVersion, describe, new_client
from edge.forward.mqtt.topics import Topics
from edge.tail_args import add_arguments
from edge.wire import Batch, WireError, decode_batch, decode_status, json_safe

__all__ = [
    "Finding",
    "SequenceChecker",
    "TailConsumer",
    "TailMessage",
    "tail_main",
]

log = logging.getLogger("edge.tail")

EXIT_OK = 0
EXIT_NO_BROKER = 1
EXIT_DISCONTINUITY = 3


# --------------------------------------------------------------------------- continuity


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the sequence check noticed about a batch.

    ``kind``: ``resend`` (a batch id seen before: drop it, harmless), ``gap``
    (numbers missing before this batch), ``duplicate`` (numbers seen before
    under a new batch id: the producer broke its promise), ``incomplete`` (the
    batch's events do not run exactly ``seq_first..seq_last``: some inside its
    range are missing, repeated or out of it), ``new_epoch`` (the edge's sequence
    restarted: its outbox was recreated).
    """

    kind: str
    edge_id: str
    batch_id: str
    detail: str

    @property
    def harmful(self) -> bool:
        return self.kind in ("gap", "duplicate", "incomplete")


@dataclass(slots=True)
class _EdgeTrack:
    epoch: str
    last_seq: int
    seen_batches: OrderedDict[str, tuple[int, int]] = field(default_factory=OrderedDict)


class SequenceChecker:
    """Per edge: the next expected sequence number and the recent batch ids."""

    def __init__(self, remember_batches: int = 10_000) -> None:
        self._edges: dict[str, _EdgeTrack] = {}
        self._remember = remember_batches
        self.gaps = 0
        self.missing = 0
        self.duplicates = 0
        self.resends = 0
        self.incomplete = 0  # batches whose events do not cover their range exactly
        self.holes = 0  # numbers missing inside such batches

    def check(self, batch: Batch) -> tuple[bool, list[Finding]]:
        """(deliver?, findings): False for a resend whose events were already delivered."""
        track = self._edges.get(batch.edge_id)
        findings: list[Finding] = []
        incomplete = self._coverage(batch)
        if incomplete is not None:
            findings.append(incomplete)
        if track is None or track.epoch != batch.epoch:
            if track is not None:
                findings.append(
                    Finding(
                        "new_epoch",
                        batch.edge_id,
                        batch.batch_id,
                        f"epoch {track.epoch} -> {batch.epoch}: the edge's outbox was recreated",
                    )
                )
            track = _EdgeTrack(batch.epoch, batch.seq_first - 1)
            self._edges[batch.edge_id] = track
        seen = track.seen_batches.get(batch.batch_id)
        if seen is not None:
            self.resends += 1
            findings.append(
                Finding("resend", batch.edge_id, batch.batch_id, f"seq {seen[0]}..{seen[1]}")
            )
            return False, findings
        expected = track.last_seq + 1
        if batch.seq_first > expected:
            self.gaps += 1
            self.missing += batch.seq_first - expected
            findings.append(
                Finding(
                    "gap",
                    batch.edge_id,
                    batch.batch_id,
                    f"expected seq {expected}, got {batch.seq_first}: "
                    f"{batch.seq_first - expected} events missing",
                )
            )
        elif batch.seq_first < expected:
            self.duplicates += 1
            findings.append(
                Finding(
                    "duplicate",
                    batch.edge_id,
                    batch.batch_id,
                    f"seq {batch.seq_first}..{min(batch.seq_last, expected - 1)} already "
                    f"delivered under other batch ids",
                )
            )
        track.seen_batches[batch.batch_id] = (batch.seq_first, batch.seq_last)
        while len(track.seen_batches) > self._remember:
            track.seen_batches.popitem(last=False)
        track.last_seq = max(track.last_seq, batch.seq_last)
        return True, findings

    def _coverage(self, batch: Batch) -> Finding | None:
        """A finding when the events are not exactly ``seq_first..seq_last``, in order."""
        seqs = [event.seq for event in batch.events]
        claimed = range(batch.seq_first, batch.seq_last + 1)
        if seqs == list(claimed):
            return None
        held = Counter(seqs)
        missing = [seq for seq in claimed if seq not in held]
        extra = sorted(seq for seq, n in held.items() if seq not in claimed or n > 1)
        self.incomplete += 1
        self.holes += len(missing)
        detail = (
            f"seq {batch.seq_first}..{batch.seq_last} ({len(claimed)} events) holds "
            f"{len(seqs)} events: {len(missing)} missing {_seqs(missing)}"
        )
        if extra:
            detail += f", {len(extra)} repeated or outside the range {_seqs(extra)}"
        elif not missing:
            detail += ", out of order"
        return Finding("incomplete", batch.edge_id, batch.batch_id, detail)

    def last_seq(self, edge_id: str) -> int | None:
        track = self._edges.get(edge_id)
        return None if track is None else track.last_seq


def _seqs(seqs: Sequence[int], show: int = 10) -> str:
    shown = ", ".join(str(seq) for seq in seqs[:show])
    return f"[{shown}{', ...' if len(seqs) > show else ''}]"


# --------------------------------------------------------------------------- consumer


@dataclass(frozen=True, slots=True)
class TailMessage:
    """One received message: a decoded batch, a status, or something undecodable."""

    topic: str
    batch: Batch | None = None
    status: dict[str, Any] | None = None
    error: str | None = None
    findings: tuple[Finding, ...] = ()
    deliver: bool = True  # False: a resend of a batch already delivered
    received_at: float = 0.0


class TailConsumer:
    """Subscribes and yields decoded messages, reconnecting on its own.

    ``async with TailConsumer(settings, [topic]) as tail: async for m in tail.messages(): ...``
    """

    def __init__(
        self,
        settings: ClientSettings,
        topics: Sequence[str],
        *,
        client_id: str | None = None,
        persistent_session_s: int | None = None,
        backoff_s: float = 0.2,
    ) -> None:
        self.settings = settings
        self.topics = tuple(topics)
        self.client_id = client_id or f"edge-tail-{int(time.time() * 1000) % 10**9}"
        self.persistent_session_s = persistent_session_s
        self.backoff_s = backoff_s
        self.checker = SequenceChecker()
        self._queue: asyncio.Queue[TailMessage] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.connected = asyncio.Event()
        self.connects = 0
        self.last_error: str | None = None

    async def __aenter__(self) -> TailConsumer:
        self._task = asyncio.ensure_future(self._run())
        self._task.set_name("edge-tail")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # Stop from inside the session so the client disconnects cleanly.
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), 5.0)
        except TimeoutError:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def messages(self) -> AsyncIterator[TailMessage]:
        while True:
            yield await self._queue.get()

    async def next_message(self, timeout: float | None = None) -> TailMessage:  # noqa: ASYNC109
        return await asyncio.wait_for(self._queue.get(), timeout)

    async def _run(self) -> None:
        while not self._stop.is_set():
            client = new_client(
                self.settings,
                identifier=self.client_id,
                protocol=ProtocolVersion.V5,
                persistent_session_s=self.persistent_session_s,
            )
            try:
                async with client:
                    self.connects += 1
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.connected.set()
                    await self._receive(client)
            except aiomqtt.MqttError as exc:
                self.last_error = describe(exc)
            finally:
                self.connected.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.backoff_s)

    async def _receive(self, client: aiomqtt.Client) -> None:
        """Until the connection breaks (raises) or the consumer stops (returns)."""
        messages = aiter(client.messages)
        stop = asyncio.ensure_future(self._stop.wait())
        try:
            while True:
                receive = asyncio.ensure_future(anext(messages))
                await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():
                    receive.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receive
                    return
                message = receive.result()
                payload = message.payload if isinstance(message.payload, bytes) else b""
                self._queue.put_nowait(self._decode(message.topic.value, payload))
        finally:
            stop.cancel()

    def _decode(self, topic: str, payload: bytes) -> TailMessage:
        now = time.time()
        if topic.endswith("/status"):
            try:
                return TailMessage(topic, status=decode_status(payload), received_at=now)
            except WireError as exc:
                return TailMessage(topic, error=str(exc), received_at=now)
        try:
            # The checker reports a batch whose events do not cover its range.
            batch = decode_batch(payload, require_complete=False)
        except WireError as exc:
            return TailMessage(topic, error=str(exc), received_at=now)
        deliver, findings = self.checker.check(batch)
        return TailMessage(
            topic,
            batch=batch,
            findings=tuple(findings),
            deliver=deliver,
            received_at=now,
        )


# --------------------------------------------------------------------------- the command


def _settings(args: argparse.Namespace) -> tuple[ClientSettings, list[str]]:
    import os  # noqa: PLC0415

    topics: list[str] = list(args.topic or [])
    if args.config is not None:
        from edge.config import load_config  # noqa: PLC0415

        config = load_config(args.config)
        settings = ClientSettings.of(config.mqtt)
        line_topics = Topics.of(config)
        topics = topics or [line_topics.events, line_topics.status]
    else:
        settings = ClientSettings("127.0.0.1", 1883)
        topics = topics or ["edge/+/+/events", "edge/+/+/status"]
    password = os.environ.get(args.password_env) if args.password_env else settings.password
    return (
        ClientSettings(
            host=args.host or settings.host,
            port=args.port or settings.port,
            username=args.username or settings.username,
            password=password,
            tls=settings.tls,
            keepalive_s=settings.keepalive_s,
            timeout_s=settings.timeout_s,
        ),
        topics,
    )


def tail_main(args: argparse.Namespace | Sequence[str] | None = None) -> int:
    """``edge tail``: returns the exit status (0, 1 no broker, 3 discontinuity seen)."""
    if not isinstance(args, argparse.Namespace):
        parser = argparse.ArgumentParser(prog="edge tail", description=__doc__.split("\n")[0])
        add_arguments(parser)
        args = parser.parse_args(list(args) if args is not None else None)
    try:
        settings, topics = _settings(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 78
    try:
        return asyncio.run(_tail(args, settings, topics, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        return EXIT_OK


async def _tail(
    args: argparse.Namespace,
    settings: ClientSettings,
    topics: list[str],
    out: TextIO,
    err: TextIO,
) -> int:
    events = 0
    harmful = False
    consumer = TailConsumer(
        settings, topics, client_id=args.client_id, persistent_session_s=args.session
    )
    print(
        f"# following {', '.join(topics)} on {settings.host}:{settings.port}", file=err, flush=True
    )
    async with consumer:
        try:
            await asyncio.wait_for(consumer.connected.wait(), args.timeout)
        except TimeoutError:
            print(f"# cannot connect: {consumer.last_error or 'timed out'}", file=err)
            return EXIT_NO_BROKER
        print("# connected", file=err, flush=True)
        while args.count is None or events < args.count:
            try:
                message = await consumer.next_message(args.timeout)
            except TimeoutError:
                break
            for finding in message.findings:
                harmful = harmful or finding.harmful
                print(
                    f"# {finding.kind.upper()} {finding.edge_id} batch {finding.batch_id}: "
                    f"{finding.detail}",
                    file=err,
                    flush=True,
                )
            events += _print(message, out, as_json=args.json)
    return EXIT_DISCONTINUITY if harmful else EXIT_OK


def _print(message: TailMessage, out: TextIO, *, as_json: bool) -> int:
    if message.error is not None:
        print(f"# undecodable message on {message.topic}: {message.error}", file=out, flush=True)
        return 0
    if message.status is not None:
        status = message.status
        if as_json:
            print(json.dumps({"topic": message.topic, "status": status}), file=out, flush=True)
        else:
            print(f"# status {status.get('edge_id')}: {status.get('status')}", file=out, flush=True)
        return 0
    batch = message.batch
    if batch is None or not message.deliver:
        return 0
    if not as_json:
        flag = " historical" if batch.historical else ""
        print(
            f"# batch {batch.batch_id} seq {batch.seq_first}..{batch.seq_last} "
            f"({len(batch.events)} events){flag}",
            file=out,
        )
    for event in batch.events:
        if as_json:
            doc = {"edge_id": batch.edge_id, "seq": event.seq, "type": event.type, **event.data}
            print(json.dumps(json_safe(doc)), file=out)
            continue
        data = dict(event.data)
        ts = data.pop("ts", None)
        machine = data.pop("machine_id", "") or "-"
        when = (
            datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
            if isinstance(ts, int | float)
            else "-"
        )
        fields = " ".join(f"{k}={_short(v)}" for k, v in data.items())
        print(f"{event.seq} {when} {machine} {event.type} {fields}", file=out)
    out.flush()
    return len(batch.events)


def _short(value: object) -> str:
    if isinstance(value, dict):
        return "{...}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)


if __name__ == "__main__":
    sys.exit(tail_main())

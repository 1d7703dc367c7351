#!/usr/bin/env python3
"""loyalty: a soabus service in Python, built on nats-py and jsonschema only.

Customers earn one loyalty point per whole currency unit (100 minor units)
charged for an order, and a refund of the order takes those points back. The
service reads payments' `charged` and `refunded` events from JetStream and
answers `shop.loyalty.v1.get-points`.

Nothing here comes from the soabus code base except the contract document
(`loyalty.v1.json`); everything else follows the wire protocol that the
project's README describes in "Writing a service in another language":

- requests arrive on the operation's subject in the queue group named after
  the service; each is validated against the contract before the handler
  runs, and each response before it leaves;
- replies carry `Soa-Contract`, `Soa-Operation`, `Nats-Msg-Id`,
  `Soa-Correlation-Id` (echoed) and `traceparent` (a child span); an error
  reply adds `Nats-Service-Error` and `Nats-Service-Error-Code` and carries
  `{"code", "message", "details"}`;
- the instance answers `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (NATS micro,
  ADR-32), registers its contract over `soa.registry.v1.register`, heartbeats
  over `soa.registry.v1.heartbeat` and deregisters on a clean shutdown;
- events come from the producer's stream `SOA_EVENTS_<SERVICE>_V<major>`
  through durable consumers that ack only after the effect is stored, and
  give up on a message by moving it to `SOA_DEAD_LETTERS`.

Points live in the JetStream KV bucket `loyalty_points`, one record per
customer holding what each of its orders contributed, written by
compare-and-set: an event delivered twice (or published twice) finds its
order already counted and changes nothing.

Run: python loyalty.py [--nats-url URL]   (see --help). SIGTERM or Ctrl-C
stops it cleanly: no new requests, in-flight work finishes, the instance
deregisters and the connection drains.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import itertools
import json
import logging
import os
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

import jsonschema
import nats
import nats.errors
import nats.js.errors
import referencing
import referencing.exceptions
import referencing.jsonschema
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, KeyValueConfig, StorageType, StreamConfig
from nats.nuid import NUID

LOG = logging.getLogger("loyalty")

# ---------------------------------------------------------------------------
# The protocol: names every soabus service uses on the wire.
# ---------------------------------------------------------------------------

# Headers (contracts::envelope::headers).
CONTRACT = "Soa-Contract"
OPERATION = "Soa-Operation"
MESSAGE_ID = "Nats-Msg-Id"
CORRELATION_ID = "Soa-Correlation-Id"
TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
SERVICE_ERROR = "Nats-Service-Error"
SERVICE_ERROR_CODE = "Nats-Service-Error-Code"
DEAD_LETTER_REASON = "Soa-Dead-Letter-Reason"
DEAD_LETTER_SUBJECT = "Soa-Dead-Letter-Subject"
DEAD_LETTER_CONSUMER = "Soa-Dead-Letter-Consumer"
DEAD_LETTER_DELIVERIES = "Soa-Dead-Letter-Deliveries"
DEAD_LETTER_SEQUENCE = "Soa-Dead-Letter-Sequence"
DEAD_LETTER_MESSAGE_ID = "Soa-Dead-Letter-Message-Id"
# On a replayed dead letter: the event's original Nats-Msg-Id. Points are
# keyed by order id, so a replay counts once anyway; it is only logged.
REPLAY_OF = "Soa-Replay-Of"

# Error codes and the number sent in Nats-Service-Error-Code for each;
# an operation's own declared codes are sent as 422.
STATUS = {
    "VALIDATION_FAILED": 400,
    "UNAUTHORIZED": 401,
    "NOT_FOUND": 404,
    "CONFLICT": 409,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "TIMEOUT": 504,
}
DECLARED_STATUS = 422

# Subjects.
REGISTRY_API = "soa.registry.v1"
DISCOVERY_VERBS = ("PING", "INFO", "STATS")
DEAD_LETTER_STREAM = "SOA_DEAD_LETTERS"
DEAD_LETTER_SUBJECTS = "soa.dlq.>"

# NATS micro reply types.
MICRO_TYPES = {
    "PING": "io.nats.micro.v1.ping_response",
    "INFO": "io.nats.micro.v1.info_response",
    "STATS": "io.nats.micro.v1.stats_response",
}

# Limits the Rust runtime keeps too.
MAX_DETAILS = 100
MAX_DETAIL_CHARS = 300
MAX_ERROR_HEADER_CHARS = 512
MAX_CORRELATION_ID_BYTES = 256
MAX_REASON_CHARS = 512
# How long JetStream remembers message ids to drop duplicates, in seconds.
DUPLICATE_WINDOW = 120.0
# The oldest nats-server soabus works with.
MIN_SERVER = (2, 10)

POINTS_BUCKET = "loyalty_points"
# The events consumed, each with what it does to a customer's record.
CONSUMED = ("charged", "refunded")


class ServiceError(Exception):
    """A handler's failure with its wire code; `internal` hides the cause."""

    def __init__(self, code: str, message: str, details: Optional[list] = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or []

    def body(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def internal_error() -> ServiceError:
    return ServiceError("INTERNAL", "the service failed to handle the request")


# ---------------------------------------------------------------------------
# Contracts: reading the document, its digest, validating messages.
# ---------------------------------------------------------------------------


def canonical_json(value: Any) -> str:
    """Canonical JSON as the registry digests it: keys sorted, no whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest(document: dict) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(document).encode("utf-8")).hexdigest()


def strict_json(data: bytes) -> Any:
    """Parses JSON as serde_json does: NaN and Infinity are not JSON."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    return json.loads(data, parse_constant=refuse)


def json_pointer(path) -> str:
    return "".join("/" + str(token).replace("~", "~0").replace("/", "~1") for token in path)


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def local_refs_only(schema: Any, where: str) -> None:
    """Refuses a `$ref` that is not `#...`: nothing here fetches a schema."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            raise ValueError(f"{where}: $ref {ref!r} points outside the document; only '#...' references are supported")
        for key, item in schema.items():
            local_refs_only(item, f"{where}/{key}")
    elif isinstance(schema, list):
        for index, item in enumerate(schema):
            local_refs_only(item, f"{where}/{index}")


class MessageSchema:
    """One message schema of one contract, compiled with the whole document
    as its root, so `#/$defs/...` resolves as it does in the registry."""

    def __init__(self, document: dict, contract_id: str, pointer: str, label: str):
        uri = f"urn:soabus:{contract_id}"
        resource = referencing.Resource.from_contents(
            document, default_specification=referencing.jsonschema.DRAFT202012
        )
        registry = referencing.Registry().with_resource(uri, resource)
        self.contract_id = contract_id
        self.label = label
        # Formats are asserted, as the Rust side does (unknown ones pass).
        self.validator = jsonschema.Draft202012Validator(
            {"$ref": f"{uri}#{pointer}"},
            registry=registry,
            format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        )

    def failures(self, instance: Any) -> list:
        """Every failing value as `{"pointer", "schema_path", "message"}`; empty when valid."""
        details = []
        for error in itertools.islice(self.validator.iter_errors(instance), MAX_DETAILS):
            schema_path = list(error.absolute_schema_path)
            # The first step is the wrapper's own `$ref` into the document.
            if schema_path[:1] == ["$ref"]:
                schema_path = schema_path[1:]
            details.append(
                {
                    "pointer": json_pointer(error.absolute_path),
                    "schema_path": json_pointer(schema_path),
                    "message": shorten(error.message, MAX_DETAIL_CHARS),
                }
            )
        return details

    def mismatch(self, details: list) -> ServiceError:
        return ServiceError("VALIDATION_FAILED", f"the {self.label} does not match {self.contract_id}", details)

    def parse(self, payload: bytes) -> Any:
        """The payload as JSON, checked; VALIDATION_FAILED with every pointer otherwise."""
        try:
            instance = strict_json(payload)
        except (ValueError, UnicodeDecodeError) as err:
            raise self.mismatch([{"pointer": "", "message": f"the payload is not valid JSON: {err}"}]) from None
        details = self.failures(instance)
        if details:
            raise self.mismatch(details)
        return instance


class Contract:
    """A contract document and its compiled message schemas."""

    def __init__(self, document: dict):
        if not isinstance(document, dict):
            raise ValueError("the contract document is not a JSON object")
        for field in ("contract", "service", "version", "description", "owner"):
            if not isinstance(document.get(field), str):
                raise ValueError(f"the contract document has no {field!r} string")
        if document["contract"] != "soabus/v1":
            raise ValueError(f"unknown contract format {document['contract']!r}; this service reads 'soabus/v1'")
        local_refs_only(document, "")
        self.document = document
        self.service = document["service"]
        self.version = document["version"]
        self.major = int(self.version.split(".")[0])
        self.id = f"{self.service}@{self.version}"
        self.digest = digest(document)
        self.operations = document.get("operations", {})
        self.events = document.get("events", {})

    @classmethod
    def load(cls, path: Path) -> "Contract":
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ValueError(f"cannot read the contract {path}: {err.strerror}") from None
        try:
            document = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{path} is not JSON: {err}") from None
        if not isinstance(document, dict):
            raise ValueError(f"{path} is not a contract document (not a JSON object)")
        return cls(document)

    def request_schema(self, operation: str) -> MessageSchema:
        return MessageSchema(self.document, self.id, f"/operations/{operation}/request", f"request of {operation}")

    def response_schema(self, operation: str) -> MessageSchema:
        return MessageSchema(self.document, self.id, f"/operations/{operation}/response", f"response of {operation}")

    def event_schema(self, event: str) -> MessageSchema:
        return MessageSchema(self.document, self.id, f"/events/{event}/payload", f"event {event}")

    def event_stream(self) -> str:
        """`SOA_EVENTS_<SERVICE>_V<major>`: where the service's events are kept."""
        return f"SOA_EVENTS_{self.service.upper().replace('-', '_')}_V{self.major}"


# ---------------------------------------------------------------------------
# Headers: the envelope of a reply, the flow's correlation id and trace.
# ---------------------------------------------------------------------------

_nuid = NUID()


def new_message_id() -> str:
    return _nuid.next().decode("ascii")


def header(msg: Msg, name: str) -> Optional[str]:
    headers = msg.headers or {}
    if name in headers:
        return headers[name]
    lowered = name.lower()
    return next((value for key, value in headers.items() if key.lower() == lowered), None)


def clean(text: str) -> str:
    """A header value: control characters (line breaks) become spaces."""
    return "".join(" " if ord(char) < 32 or ord(char) == 127 else char for char in text)


def correlation_id(msg: Msg) -> Optional[str]:
    value = header(msg, CORRELATION_ID)
    if value is None or not value or len(value.encode("utf-8")) > MAX_CORRELATION_ID_BYTES:
        return None
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        return None
    return value


def child_traceparent(msg: Msg) -> str:
    """A new span in the caller's trace (W3C Trace Context), or a new trace."""
    parent = (header(msg, TRACEPARENT) or "").strip().split("-")
    hexdigits = set("0123456789abcdef")

    def is_hex(text: str, length: int) -> bool:
        return len(text) == length and set(text) <= hexdigits

    if (
        len(parent) >= 4
        and is_hex(parent[0], 2)
        and parent[0] != "ff"
        and not (parent[0] == "00" and len(parent) > 4)
        and is_hex(parent[1], 32)
        and int(parent[1], 16) != 0
        and is_hex(parent[2], 16)
        and int(parent[2], 16) != 0
        and is_hex(parent[3], 2)
    ):
        trace_id, flags = parent[1], parent[3]
    else:
        trace_id, flags = secrets.token_hex(16), "01"
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------
# The service: operations, discovery, counters.
# ---------------------------------------------------------------------------

Handler = Callable[[Any], Awaitable[Any]]


class Endpoint:
    def __init__(self, contract: Contract, name: str, handler: Handler, queue_group: str):
        operation = contract.operations[name]
        self.name = name
        self.subject = operation["subject"]
        self.queue_group = queue_group
        self.declared = set(operation.get("errors", []))
        self.handler = handler
        self.request = contract.request_schema(name)
        self.response = contract.response_schema(name)
        self.metadata = {"soa.operation": name}
        if operation.get("idempotent"):
            self.metadata["soa.idempotent"] = "true"
        self.requests = 0
        self.errors = 0
        self.processing_ns = 0
        self.last_error = ""

    def info(self) -> dict:
        return {"name": self.name, "subject": self.subject, "queue_group": self.queue_group, "metadata": self.metadata}

    def stats(self) -> dict:
        return {
            "name": self.name,
            "subject": self.subject,
            "queue_group": self.queue_group,
            "num_requests": self.requests,
            "num_errors": self.errors,
            "last_error": self.last_error,
            "processing_time": self.processing_ns,
            "average_processing_time": self.processing_ns // self.requests if self.requests else 0,
        }


class Service:
    """Serves a contract's operations, validating both ways, and answers discovery."""

    def __init__(self, nc, contract: Contract, handlers: dict, instance_id: str, handler_timeout: float):
        missing = set(contract.operations) - set(handlers)
        if missing:
            raise ValueError(f"{contract.id} declares operations without a handler: {sorted(missing)}")
        self.nc = nc
        self.contract = contract
        self.instance_id = instance_id
        self.handler_timeout = handler_timeout
        self.endpoints = [
            Endpoint(contract, name, handlers[name], contract.service) for name in sorted(contract.operations)
        ]
        self.identity = {
            "name": contract.service,
            "id": instance_id,
            "version": contract.version,
            "metadata": {"soa.contract": contract.id, "soa.digest": contract.digest},
        }
        self.started = now_rfc3339()
        self.subscriptions = []
        self.in_flight: set = set()

    async def start(self) -> None:
        for endpoint in self.endpoints:
            self.subscriptions.append(
                await self.nc.subscribe(endpoint.subject, queue=endpoint.queue_group, cb=self._dispatch(endpoint))
            )
        # PING last: whoever it answers finds everything else subscribed.
        for verb in sorted(DISCOVERY_VERBS, key=lambda verb: verb == "PING"):
            for subject in (
                f"$SRV.{verb}",
                f"$SRV.{verb}.{self.contract.service}",
                f"$SRV.{verb}.{self.contract.service}.{self.instance_id}",
            ):
                self.subscriptions.append(await self.nc.subscribe(subject, cb=self._discovery(verb)))
        # Once the server has seen the subscriptions, requests find them.
        await self.nc.flush()
        LOG.info("Service started: contract=%s instance=%s", self.contract.id, self.instance_id)

    async def stop(self, timeout: float) -> None:
        """No new requests; the ones delivered already are answered."""
        for subscription in self.subscriptions:
            try:
                await subscription.drain()
            except nats.errors.Error as err:
                LOG.debug("Draining a subscription failed: %s", err)
        if self.in_flight:
            _, pending = await asyncio.wait(set(self.in_flight), timeout=timeout)
            if pending:
                LOG.warning(
                    "%d handlers were still running at the shutdown timeout; their callers will time out.", len(pending)
                )
                for task in pending:
                    task.cancel()

    def _dispatch(self, endpoint: Endpoint):
        async def on_request(msg: Msg) -> None:
            # Handlers run concurrently; the subscription keeps reading.
            task = asyncio.create_task(self._handle(endpoint, msg))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)

        return on_request

    def _discovery(self, verb: str):
        async def on_discovery(msg: Msg) -> None:
            if not msg.reply:
                return
            body = {"type": MICRO_TYPES[verb], **self.identity}
            if verb == "INFO":
                body["description"] = self.contract.document["description"]
                body["endpoints"] = [endpoint.info() for endpoint in self.endpoints]
            elif verb == "STATS":
                body["started"] = self.started
                body["endpoints"] = [endpoint.stats() for endpoint in self.endpoints]
            await self.nc.publish(msg.reply, json.dumps(body).encode())

        return on_discovery

    async def _handle(self, endpoint: Endpoint, msg: Msg) -> None:
        """The one place a request becomes a reply."""
        if not msg.reply:
            LOG.warning("Dropped a request on %s without a reply subject.", msg.subject)
            return
        started = time.perf_counter_ns()
        headers = {
            CONTRACT: self.contract.id,
            OPERATION: endpoint.name,
            MESSAGE_ID: new_message_id(),
            TRACEPARENT: child_traceparent(msg),
        }
        flow = correlation_id(msg)
        if flow is not None:
            headers[CORRELATION_ID] = flow
        try:
            payload = await self._respond(endpoint, msg.data)
            error = None
        except ServiceError as err:
            error = err
        except Exception:  # noqa: BLE001 - any failure still answers the caller
            LOG.exception("Handling a request of %s failed.", endpoint.name)
            error = internal_error()
        if error is not None:
            body = error.body()
            headers[SERVICE_ERROR] = clean(error.message[:MAX_ERROR_HEADER_CHARS])
            headers[SERVICE_ERROR_CODE] = str(STATUS.get(error.code, DECLARED_STATUS))
            payload = json.dumps(body).encode()
            endpoint.errors += 1
            endpoint.last_error = f"{error.code}: {error.message}"
        endpoint.requests += 1
        endpoint.processing_ns += time.perf_counter_ns() - started
        try:
            await self.nc.publish(msg.reply, payload, headers=headers)
        except nats.errors.Error as err:
            LOG.warning("Could not send the reply: %s", err)

    async def _respond(self, endpoint: Endpoint, data: bytes) -> bytes:
        request = endpoint.request.parse(data)
        try:
            response = await asyncio.wait_for(endpoint.handler(request), timeout=self.handler_timeout)
        except asyncio.TimeoutError:
            LOG.error("The handler of %s did not finish in time.", endpoint.name)
            raise ServiceError("TIMEOUT", f"{endpoint.name} did not finish within {self.handler_timeout}s") from None
        except ServiceError as err:
            if err.code == "INTERNAL":
                LOG.error("The handler failed: %s", err)
                raise internal_error() from None
            if err.code not in STATUS and err.code not in endpoint.declared:
                LOG.error("The handler returned the undeclared code %s; answering INTERNAL instead.", err.code)
                raise internal_error() from None
            raise
        details = endpoint.response.failures(response)
        if details:
            LOG.error("The response breaks the service's own contract: %s", details)
            raise ServiceError("INTERNAL", "the service produced a response that breaks its contract")
        return json.dumps(response).encode()


# ---------------------------------------------------------------------------
# The registry: register, heartbeat, deregister.
# ---------------------------------------------------------------------------


class RegistryError(Exception):
    def __init__(self, kind: str, message: str, code: Optional[str] = None):
        super().__init__(message)
        self.kind = kind  # "unreachable", "refused" or "garbled"
        self.code = code


async def registry_call(nc, verb: str, request: dict, timeout: float) -> dict:
    try:
        reply = await nc.request(f"{REGISTRY_API}.{verb}", json.dumps(request).encode(), timeout=timeout)
    except (asyncio.TimeoutError, nats.errors.NoRespondersError) as err:
        raise RegistryError("unreachable", f"the registry did not answer: {err or type(err).__name__}") from None
    except nats.errors.Error as err:
        raise RegistryError("unreachable", f"the registry did not answer: {err}") from None
    if header(reply, SERVICE_ERROR_CODE) is not None or header(reply, SERVICE_ERROR) is not None:
        try:
            body = json.loads(reply.data)
            code, message = body["code"], body["message"]
        except (ValueError, KeyError, TypeError):
            code, message = None, header(reply, SERVICE_ERROR) or "no message"
        raise RegistryError("refused", f"the registry refused: {code}: {message}", code)
    try:
        answer = json.loads(reply.data)
    except ValueError as err:
        raise RegistryError("garbled", f"the registry's reply could not be read: {err}") from None
    if not isinstance(answer, dict):
        raise RegistryError("garbled", "the registry's reply is not a JSON object")
    return answer


async def keep_registered(
    nc, contract: Contract, instance_id: str, interval: float, ttl: float, stop: asyncio.Event
) -> None:
    """Registers, heartbeats every `interval` until `stop`, then deregisters.
    Never fails: while the registry is away the service keeps serving."""
    timeout = 2.0
    register = {"document": contract.document}
    heartbeat = {
        "instance_id": instance_id,
        "contract": contract.id,
        "digest": contract.digest,
        "ttl_ms": int(ttl * 1000),
    }
    registered, refusals, next_attempt = False, 0, 0.0
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        if not registered and loop.time() >= next_attempt:
            try:
                answer = await registry_call(nc, "register", register, timeout)
                if answer.get("digest") != contract.digest:
                    LOG.warning(
                        "The registry digests the contract as %s, not %s.", answer.get("digest"), contract.digest
                    )
                LOG.info("Registered the contract %s (created: %s).", answer.get("id"), answer.get("created"))
                registered, refusals = True, 0
            except RegistryError as err:
                if err.kind == "refused":
                    refusals += 1
                    wait = min(interval * 2 ** min(refusals, 16), 300.0)
                    next_attempt = loop.time() + wait
                    LOG.error("%s; the service keeps serving unregistered and tries again in %.0fs.", err, wait)
                else:
                    LOG.warning("Could not register (%s); will try again at the next heartbeat.", err)
        if registered:
            try:
                answer = await registry_call(nc, "heartbeat", heartbeat, timeout)
                if answer.get("drift"):
                    LOG.warning("The registry reports contract drift for %s.", contract.id)
            except RegistryError as err:
                if err.code != "NOT_FOUND":
                    LOG.warning("A heartbeat failed (%s); will register again when the registry answers.", err)
                registered = False
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except asyncio.TimeoutError:
            pass
    try:
        await registry_call(nc, "deregister", {"instance_id": instance_id}, timeout)
        LOG.info("Deregistered.")
    except RegistryError as err:
        LOG.warning("Could not deregister (%s); the registry will expire this instance.", err)


async def fetch_contract(nc, service: str, major: int, stop: asyncio.Event) -> Optional[Contract]:
    """The latest registered contract of `service@major`, asking until the
    registry has it; None when stopped first."""
    wait = 0.5
    while not stop.is_set():
        try:
            answer = await registry_call(nc, "get", {"service": service, "major": major}, 2.0)
            return Contract(answer["document"])
        except (RegistryError, KeyError, TypeError, ValueError) as err:
            LOG.warning("Cannot read the contract of %s@%d yet (%s); asking again in %.1fs.", service, major, err, wait)
        try:
            await asyncio.wait_for(stop.wait(), timeout=wait)
        except asyncio.TimeoutError:
            wait = min(wait * 2, 5.0)
    return None


# ---------------------------------------------------------------------------
# Points: one KV record per customer, changed by compare-and-set.
# ---------------------------------------------------------------------------


class Points:
    def __init__(self, kv):
        self.kv = kv

    @classmethod
    async def open(cls, js) -> "Points":
        try:
            kv = await js.key_value(POINTS_BUCKET)
        except nats.js.errors.BucketNotFoundError:
            try:
                kv = await js.create_key_value(
                    KeyValueConfig(
                        bucket=POINTS_BUCKET,
                        description="loyalty: points per customer and what each order contributed",
                        history=1,
                        storage=StorageType.FILE,
                    )
                )
            except nats.js.errors.APIError:
                # Another instance created it first.
                kv = await js.key_value(POINTS_BUCKET)
        return cls(kv)

    @staticmethod
    def key(customer_id: str) -> str:
        # KV keys allow few characters; hex keeps any id and no two alike.
        return "c" + customer_id.encode("utf-8").hex()

    @staticmethod
    def summary(customer_id: str, record: Optional[dict]) -> dict:
        orders = (record or {}).get("orders", {})
        return {
            "customer_id": customer_id,
            "points": sum(o.get("charged_points", 0) for o in orders.values() if not o.get("refunded")),
            "charges": sum(1 for o in orders.values() if "charged_points" in o),
            "refunds": sum(1 for o in orders.values() if o.get("refunded")),
        }

    async def read(self, customer_id: str) -> tuple:
        try:
            entry = await self.kv.get(self.key(customer_id))
        except nats.js.errors.KeyNotFoundError:
            return None, None
        return json.loads(entry.value), entry.revision

    async def get(self, customer_id: str) -> dict:
        record, _ = await self.read(customer_id)
        return self.summary(customer_id, record)

    async def apply(self, event: str, payload: dict) -> bool:
        """Counts one charge or refund of an order; False when it was counted
        before. Points never depend on the order the two events arrive in:
        an order's points count while it is charged and not refunded."""
        customer_id, order_id = payload["customer_id"], payload["order_id"]
        for _ in range(20):
            record, revision = await self.read(customer_id)
            record = record or {"customer_id": customer_id, "orders": {}}
            order = record["orders"].setdefault(order_id, {})
            if event == "charged":
                if "charged_points" in order:
                    return False
                order["charged_points"] = payload["amount"]["amount_cents"] // 100
                order["payment_id"] = payload.get("payment_id")
            else:
                if order.get("refunded"):
                    return False
                order["refunded"] = True
                order["refund_id"] = payload.get("refund_id")
            record.update(self.summary(customer_id, record))
            data = json.dumps(record).encode()
            try:
                if revision is None:
                    await self.kv.create(self.key(customer_id), data)
                else:
                    await self.kv.update(self.key(customer_id), data, last=revision)
                return True
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another delivery changed the record: read it again
        raise RuntimeError(f"the record of customer {customer_id!r} kept changing")


# ---------------------------------------------------------------------------
# Events: durable consumers, ack after the effect, dead letters.
# ---------------------------------------------------------------------------


async def ensure_stream(js, name: str, subjects: list) -> None:
    """The stream, created as its producer would, with every subject wanted."""
    try:
        info = await js.stream_info(name)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(
                StreamConfig(name=name, subjects=subjects, storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW)
            )
            return
        except nats.js.errors.APIError:
            info = await js.stream_info(name)  # created meanwhile by someone else
    missing = [subject for subject in subjects if subject not in (info.config.subjects or [])]
    if missing:
        config = info.config
        config.subjects = list(config.subjects or []) + missing
        await js.update_stream(config)


async def settle(answer: Awaitable[None]) -> None:
    """Sends an ack, nak or term; one that cannot be sent changes nothing,
    since the server redelivers what was not acked after the ack wait."""
    try:
        await answer
    except nats.errors.Error as err:
        LOG.warning("Could not acknowledge an event (%s); it will be redelivered.", err)


class Consumer:
    """One durable consumer of one event of the producer's stream."""

    def __init__(self, js, producer: Contract, event: str, durable: str, apply, max_deliveries: int):
        self.js = js
        self.stream = producer.event_stream()
        self.event = event
        self.stream_subjects = [declared["subject"] for declared in producer.events.values()]
        self.subject = producer.events[event]["subject"]
        self.schema = producer.event_schema(event)
        self.durable = durable
        self.apply = apply
        self.max_deliveries = max_deliveries
        self.backoff = (0.1, 0.5, 2.0)

    async def run(self, stop: asyncio.Event) -> None:
        """Consumes until `stop`. A failure of the server or the connection
        is waited out, never fatal: the events wait in the stream."""
        subscription = None
        wait = 0.5
        while not stop.is_set():
            try:
                if subscription is None:
                    subscription = await self.subscribe()
                # nats-py reports an empty fetch as nats.errors.TimeoutError
                # or as a bare asyncio.TimeoutError, depending on where it waited.
                messages = await subscription.fetch(batch=8, timeout=1.0)
            except asyncio.TimeoutError:
                continue
            except Exception as err:  # noqa: BLE001 - whatever failed, try again after a pause
                if stop.is_set():
                    break
                LOG.warning(
                    "Consuming %s as %s failed (%s); trying again in %.1fs.", self.subject, self.durable, err, wait
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, 5.0)
                continue
            wait = 0.5
            # One at a time, each acked after its effect is stored; what is
            # left when stopping comes back after the ack wait.
            for message in messages:
                await self.process(message)
        if subscription is not None:
            try:
                await subscription.unsubscribe()
            except nats.errors.Error:
                pass

    async def subscribe(self):
        """Creates the producer's stream as the producer would (when it has
        not started yet), then the durable consumer (or finds them), and binds
        a pull subscription."""
        await ensure_stream(self.js, self.stream, self.stream_subjects)
        await self.js.add_consumer(
            self.stream,
            ConsumerConfig(
                durable_name=self.durable,
                filter_subject=self.subject,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=30.0,
                # Only this service gives up on a message, after storing it as a dead letter.
                max_deliver=-1,
            ),
        )
        subscription = await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)
        LOG.info("Consuming %s from %s as %s.", self.subject, self.stream, self.durable)
        return subscription

    async def process(self, message: Msg) -> None:
        deliveries = message.metadata.num_delivered
        try:
            payload = strict_json(message.data)
        except (ValueError, UnicodeDecodeError) as err:
            await self.give_up(message, f"VALIDATION_FAILED: the event {self.event} is not valid JSON: {err}")
            return
        details = self.schema.failures(payload)
        if details:
            summary = "; ".join(f"at {d['pointer'] or '(root)'}: {d['message']}" for d in details[:3])
            await self.give_up(
                message,
                f"VALIDATION_FAILED: the event {self.event} does not match {self.schema.contract_id}: {summary}",
            )
            return
        try:
            counted = await self.apply(self.event, payload)
        except Exception as err:  # noqa: BLE001 - the store may fail in many ways; retry them all
            reason = f"INTERNAL: {err}"
            if deliveries >= self.max_deliveries:
                await self.give_up(message, f"{reason} (gave up after {deliveries} deliveries)")
                return
            delay = self.backoff[min(deliveries - 1, len(self.backoff) - 1)]
            LOG.warning("Handling %s failed (%s); retrying in %.1fs.", self.event, err, delay)
            await settle(message.nak(delay=delay))
            return
        event_id = (message.headers or {}).get(REPLAY_OF) or (message.headers or {}).get(MESSAGE_ID)
        LOG.debug(
            "%s %s of order %s %s.",
            self.event,
            event_id,
            payload.get("order_id"),
            "counted" if counted else "was counted before",
        )
        await settle(message.ack())

    async def give_up(self, message: Msg, reason: str) -> None:
        """Stores the message in the dead-letter stream, then terminates it."""
        LOG.warning("Moving an event to the dead letters: %s", reason)
        headers = {k: v for k, v in (message.headers or {}).items() if not k.lower().startswith("nats-")}
        headers[DEAD_LETTER_REASON] = clean(reason[:MAX_REASON_CHARS])
        headers[DEAD_LETTER_SUBJECT] = message.subject
        headers[DEAD_LETTER_CONSUMER] = self.durable
        headers[DEAD_LETTER_DELIVERIES] = str(message.metadata.num_delivered)
        headers[DEAD_LETTER_SEQUENCE] = str(message.metadata.sequence.stream)
        original = (message.headers or {}).get(MESSAGE_ID)
        if original:
            headers[DEAD_LETTER_MESSAGE_ID] = original
        headers[MESSAGE_ID] = new_message_id()
        try:
            await ensure_stream(self.js, DEAD_LETTER_STREAM, [DEAD_LETTER_SUBJECTS])
            await self.js.publish(f"soa.dlq.{self.stream}.{self.durable}", message.data, headers=headers)
        except (nats.errors.Error, nats.js.errors.Error) as err:
            LOG.error("Could not store the dead letter (%s); the event will be redelivered.", err)
            await settle(message.nak(delay=1.0))
            return
        await settle(message.term())


async def consume_payments(nc, js, points: Points, stop: asyncio.Event, max_deliveries: int) -> None:
    """Learns payments' contract from the registry, then consumes its events."""
    producer = await fetch_contract(nc, "payments", 1, stop)
    if producer is None:
        return
    for event in CONSUMED:
        if event not in producer.events:
            raise ValueError(f"{producer.id} declares no event {event!r}")
    consumers = [
        Consumer(js, producer, event, f"loyalty-payments-{event}", points.apply, max_deliveries) for event in CONSUMED
    ]
    await asyncio.gather(*(consumer.run(stop) for consumer in consumers))


# ---------------------------------------------------------------------------
# The process.
# ---------------------------------------------------------------------------


def arguments(argv: list) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The loyalty points service (soabus, in Python).")
    parser.add_argument(
        "--nats-url",
        default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"),
        help="NATS server URL (default $NATS_URL, then nats://127.0.0.1:4222)",
    )
    parser.add_argument(
        "--contract",
        type=Path,
        default=Path(__file__).resolve().with_name("loyalty.v1.json"),
        help="the contract document (default: loyalty.v1.json beside this file)",
    )
    parser.add_argument("--instance-id", default=None, help="this instance's id (default: a fresh NUID)")
    parser.add_argument(
        "--heartbeat-interval", type=float, default=5.0, metavar="SECONDS", help="time between heartbeats (default 5)"
    )
    parser.add_argument(
        "--ttl",
        type=float,
        default=20.0,
        metavar="SECONDS",
        help="how long the registry keeps the instance without a beat (default 20)",
    )
    parser.add_argument(
        "--handler-timeout",
        type=float,
        default=4.0,
        metavar="SECONDS",
        help="the longest a request may take (default 4)",
    )
    parser.add_argument(
        "--max-deliveries",
        type=int,
        default=5,
        help="deliveries of a failing event before it goes to the dead letters (default 5)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long shutdown waits for requests in flight (default 10)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LOYALTY_LOG", "INFO"),
        help="DEBUG, INFO, WARNING or ERROR (default $LOYALTY_LOG, then INFO)",
    )
    args = parser.parse_args(argv)
    for name in ("heartbeat_interval", "ttl", "handler_timeout", "shutdown_timeout"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be more than 0")
    if args.ttl < args.heartbeat_interval:
        parser.error("--ttl must be at least --heartbeat-interval, or every instance expires between beats")
    if args.max_deliveries < 1:
        parser.error("--max-deliveries must be at least 1")
    return args


def check_server(nc) -> None:
    version = str(nc._server_info.get("version", "0.0.0"))
    try:
        major, minor = (int(part) for part in version.split("-")[0].split(".")[:2])
    except ValueError:
        raise ValueError(f"the NATS server reports an unreadable version {version!r}") from None
    if (major, minor) < MIN_SERVER:
        raise ValueError(
            f"nats-server {version} is too old: soabus needs 2.10 or newer (scripts/install-nats-server installs one)"
        )


async def run(args: argparse.Namespace) -> int:
    try:
        contract = Contract.load(args.contract)
    except ValueError as err:
        LOG.error("%s", err)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    instance_id = args.instance_id or new_message_id()
    try:
        nc = await nats.connect(
            args.nats_url,
            name=f"loyalty {instance_id}",
            max_reconnect_attempts=-1,
            connect_timeout=5,
            allow_reconnect=True,
        )
    except (OSError, nats.errors.Error) as err:
        LOG.error("Cannot connect to NATS at %s: %s", args.nats_url, err)
        return 2
    try:
        check_server(nc)
        js = nc.jetstream()
        points = await Points.open(js)

        async def get_points(request: dict) -> dict:
            return await points.get(request["customer_id"])

        service = Service(nc, contract, {"get-points": get_points}, instance_id, args.handler_timeout)
        await service.start()
    except (ValueError, nats.errors.Error, nats.js.errors.Error) as err:
        LOG.error("Cannot start: %s", err)
        await nc.close()
        return 1
    registration = asyncio.create_task(
        keep_registered(nc, contract, instance_id, args.heartbeat_interval, args.ttl, stop)
    )
    consuming = asyncio.create_task(consume_payments(nc, js, points, stop, args.max_deliveries))
    # Runs until a signal, or until the consumers fail for good.
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({stopped, consuming}, return_when=asyncio.FIRST_COMPLETED)
    failed = consuming.done() and not stop.is_set()
    if failed:
        LOG.error("The event consumers stopped: %r; shutting down.", consuming.exception())
    stop.set()
    LOG.info("Shutting down: no new requests.")
    await service.stop(args.shutdown_timeout)
    for task in (consuming, registration):
        try:
            await asyncio.wait_for(task, timeout=args.shutdown_timeout)
        except asyncio.TimeoutError:
            task.cancel()
        except Exception as err:  # noqa: BLE001 - reported, shutdown goes on
            if not failed:
                LOG.error("A task failed while stopping: %s", err)
    try:
        await asyncio.wait_for(nc.drain(), timeout=10)
    except (asyncio.TimeoutError, nats.errors.Error) as err:
        LOG.warning("Could not drain the connection: %s", err or "timed out")
    LOG.info("Service stopped.")
    return 1 if failed else 0


def main(argv: list) -> int:
    args = arguments(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s loyalty: %(message)s", stream=sys.stderr
    )
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Where the edge decides what asyncua's server does per connection and per session.

asyncua serves every session alike: it validates a client certificate without
knowing whether the channel is secured, reads ``UserExecutable`` and
``UserAccessLevel`` straight from the node store, refuses a Write with a
ServiceFault for the whole request, and has no place for the text of a refused
method call. :class:`EdgeServer` plugs in at three points asyncua builds
per server, never by patching the library:

- **the connection** (:class:`EdgeProcessor`, a ``UaProcessor`` made by our
  protocol factory): CreateSession runs with the channel's security mode in
  :func:`channel_security_mode`, so the trust list knows whether it guards a
  secured channel; Call runs with a :class:`CallContext`, and the CallResponse
  carries the explanations the method handler gave (:func:`explain`) as
  DiagnosticInfos with a StringTable, when the request asked for them
  (``RequestHeader.ReturnDiagnostics``, OPC UA Part 4 §7.29 / §7.8);
- **the session** (:class:`EdgeSession`, made by :class:`EdgeInternalServer`):
  reads answer ``UserExecutable`` and ``UserAccessLevel`` for the session's
  user (:class:`AccessRules`); every Write is answered node by node
  (``BadNotWritable``, ``BadUserAccessDenied``, ``BadNodeIdUnknown``) and
  changes nothing; Call runs with the session's user in :func:`current_user`;
  event filters' OfType matches subtypes (:class:`SubtypeWhereClause`);
- **the server** (:class:`EdgeServer`): knows its open sessions.
"""

from __future__ import annotations

import contextvars
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from asyncua import ua
from asyncua.crypto import uacrypto
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.binary_server_asyncio import BinaryServer, OPCUAProtocol
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession, SessionState
from asyncua.server.monitored_item_service import WhereClauseEvaluator
from asyncua.server.server import Server
from asyncua.server.uaprocessor import UaProcessor

from edge.serve.opcua.standard_nodes import StandardNodeCache
from edge.serve.opcua.uaids import AttributeIds, ObjectIds, StatusCodes, numeric, status

log = logging.getLogger("edge.opcua_server")

_HAS_SUBTYPE = numeric(ObjectIds.HasSubtype)
_CREATE_SESSION = numeric(ObjectIds.CreateSessionRequest_Encoding_DefaultBinary)
_CALL = numeric(ObjectIds.CallRequest_Encoding_DefaultBinary)

# RequestHeader.ReturnDiagnostics, operation level (Part 4 §7.29)
OPERATION_SYMBOLIC_ID = 0x20
OPERATION_LOCALIZED_TEXT = 0x40
OPERATION_ADDITIONAL_INFO = 0x80
_OPERATION_TEXT = OPERATION_SYMBOLIC_ID | OPERATION_LOCALIZED_TEXT | OPERATION_ADDITIONAL_INFO

_WRITE_BITS = (
    ua.AccessLevel.CurrentWrite.mask
    | ua.AccessLevel.HistoryWrite.mask
    | ua.AccessLevel.SemanticChange.mask
    | ua.AccessLevel.StatusWrite.mask
    | ua.AccessLevel.TimestampWrite.mask
)

_ANONYMOUS = User(role=UserRole.Anonymous)

_CHANNEL_MODE: contextvars.ContextVar[ua.MessageSecurityMode | None] = contextvars.ContextVar(
    "opcua_channel_mode", default=None
)
_USER: contextvars.ContextVar[User | None] = contextvars.ContextVar("opcua_user", default=None)
_SESSION: contextvars.ContextVar[InternalSession | None] = contextvars.ContextVar(
    "opcua_session", default=None
)


@dataclass(slots=True)
class CallContext:
    """One Call request: the words for results the handler explained."""

    explanations: dict[int, str] = field(default_factory=dict)


_CALL_CONTEXT: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "opcua_call", default=None
)


def channel_security_mode() -> ua.MessageSecurityMode | None:
    """The security mode of the channel whose CreateSession is being handled
    (None outside one: callers treat that as secured)."""
    return _CHANNEL_MODE.get()


def current_user() -> User | None:
    """The user of the session whose Call is being handled (None outside one)."""
    return _USER.get()


def current_session() -> InternalSession | None:
    """The session whose Call is being handled (None outside one)."""
    return _SESSION.get()


def explain(result: ua.CallMethodResult, text: str) -> None:
    """Say in words why ``result`` is Bad; sent as its DiagnosticInfo when asked for."""
    context = _CALL_CONTEXT.get()
    if context is not None:
        context.explanations[id(result)] = text


class AccessRules(Protocol):
    """What a session's user may do, as the User* attributes tell it."""

    def user_executable(self, method_id: ua.NodeId, user: User | None) -> bool | None:
        """May ``user`` call ``method_id``? None: not the edge's method, keep the stored value."""
        ...


class _StringTable:
    def __init__(self) -> None:
        self.strings: list[str] = []
        self._index: dict[str, int] = {}

    def index(self, text: str) -> int:
        found = self._index.get(text)
        if found is None:
            found = self._index[text] = len(self.strings)
            self.strings.append(text)
        return found


def _diagnostic(
    table: _StringTable, code: ua.StatusCode, text: str | None, mask: int
) -> ua.DiagnosticInfo:
    info = ua.DiagnosticInfo()
    if text is None:
        return info
    if mask & OPERATION_SYMBOLIC_ID:
        info.SymbolicId = ua.Int32(table.index(code.name))
    if mask & OPERATION_LOCALIZED_TEXT:
        # asyncua numbers the encoding-mask bits in field order, which swaps Locale
        # (0x08 in Part 6 §5.2.2.12) and LocalizedText (0x04): with the same index in
        # both, every decoder finds the text where it looks.
        info.LocalizedText = info.Locale = ua.Int32(table.index(text))
    if mask & OPERATION_ADDITIONAL_INFO:
        info.AdditionalInfo = ua.String(text)
    return info


def add_call_diagnostics(response: ua.CallResponse, context: CallContext, mask: int) -> None:
    """Fill the CallResponse's DiagnosticInfos and StringTable as ``mask`` asks
    (Part 4 §5.12.2: one DiagnosticInfo per result, none when none was asked for)."""
    results = response.Results
    if not mask & _OPERATION_TEXT:
        for result in results:
            result.InputArgumentDiagnosticInfos = []
        return
    table = _StringTable()
    explained = [context.explanations.get(id(result)) for result in results]
    if any(text is not None for text in explained):
        response.DiagnosticInfos = [
            _diagnostic(table, result.StatusCode, text, mask)
            for result, text in zip(results, explained, strict=True)
        ]
    for result in results:
        if result.InputArgumentDiagnosticInfos:
            result.InputArgumentDiagnosticInfos = [
                _diagnostic(table, code, given.AdditionalInfo, mask)
                for code, given in zip(
                    result.InputArgumentResults, result.InputArgumentDiagnosticInfos, strict=False
                )
            ]
    response.ResponseHeader.StringTable = table.strings


# --------------------------------------------------------------------------- sessions


class EdgeSession(InternalSession):
    """A client's session, answering User* attributes and Writes for its user."""

    def __init__(
        self,
        iserver: EdgeInternalServer,
        name: str,
        user: User,
        external: bool,
    ) -> None:
        super().__init__(
            iserver, iserver.aspace, iserver.subscription_service, name, user, external
        )
        self._rules = iserver.rules
        self._on_close = iserver.session_closed

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        results = await super().read(params)
        rules = self._rules
        if rules is None:
            return results
        for index, item in enumerate(params.NodesToRead):
            attribute = item.AttributeId
            if attribute == AttributeIds.UserExecutable:
                allowed = rules.user_executable(item.NodeId, self.user)
                if allowed is not None and _good(results[index]):
                    results[index] = ua.DataValue(ua.Variant(allowed, ua.VariantType.Boolean))
            elif attribute == AttributeIds.UserAccessLevel:
                stored = results[index]
                if _good(stored) and stored.Value is not None:
                    # Nobody writes here: the user may do what the node allows, minus writing.
                    level = int(stored.Value.Value) & ~_WRITE_BITS
                    results[index] = ua.DataValue(ua.Variant(level, ua.VariantType.Byte))
        return results

    async def write(self, params: ua.WriteParameters) -> list[ua.StatusCode]:
        """Every item refused on its own: values come from the line, not from clients."""
        aspace = self.aspace
        results: list[ua.StatusCode] = []
        for item in params.NodesToWrite:
            node = aspace.get(item.NodeId)
            if node is None:
                results.append(status(StatusCodes.BadNodeIdUnknown))
            elif item.AttributeId not in node.attributes:
                results.append(status(StatusCodes.BadAttributeIdInvalid))
            elif item.AttributeId != AttributeIds.Value:
                results.append(status(StatusCodes.BadNotWritable))
            else:
                stored = node.attributes.get(AttributeIds.AccessLevel)
                level = (
                    int(stored.value.Value.Value)
                    if stored is not None and stored.value and stored.value.Value
                    else 0
                )
                writable = bool(level & ua.AccessLevel.CurrentWrite.mask)
                results.append(
                    status(
                        StatusCodes.BadUserAccessDenied if writable else StatusCodes.BadNotWritable
                    )
                )
        return results

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        token, session_token = _USER.set(self.user), _SESSION.set(self)
        try:
            return await super().call(params)
        finally:
            _USER.reset(token)
            _SESSION.reset(session_token)

    async def create_monitored_items(
        self, params: ua.CreateMonitoredItemsParameters
    ) -> list[ua.MonitoredItemCreateResult]:
        results = await super().create_monitored_items(params)
        subscription = self.subscription_service.subscriptions.get(params.SubscriptionId)
        if subscription is not None:
            # asyncua keeps its monitored items here; their where clauses get OfType right.
            for item in subscription.monitored_item_srv._monitored_items.values():
                evaluator = item.where_clause_evaluator
                if type(evaluator) is WhereClauseEvaluator:
                    item.where_clause_evaluator = SubtypeWhereClause(
                        evaluator.logger, self.aspace, item.filter.WhereClause
                    )
        return results

    async def close_session(self, delete_subs: bool = True) -> None:
        await super().close_session(delete_subs)
        self._on_close(self)


class SubtypeWhereClause(WhereClauseEvaluator):
    """An event filter's where clause with OfType as Part 4 §7.7.3 defines it: the
    event's type *or a subtype of it* (asyncua compares the types for equality, so
    ``OfType(AcknowledgeableConditionType)``, which alarm clients send, would
    match no alarm)."""

    def _eval_el(self, index: int, event: Any) -> Any:
        element = self.elements[index]
        if element.FilterOperator == ua.FilterOperator.OfType:
            wanted = self._eval_op(element.FilterOperands[0], event)
            return is_subtype(self._aspace, event.EventType, wanted)
        return super()._eval_el(index, event)


def is_subtype(aspace: Any, type_id: ua.NodeId, of: object) -> bool:
    """``type_id`` is ``of`` or one of its subtypes (HasSubtype, walked upwards)."""
    current: ua.NodeId | None = type_id
    while current is not None:
        if current == of:
            return True
        data = aspace.get(current)
        if data is None:
            return False
        current = next(
            (
                r.NodeId
                for r in data.references
                if r.ReferenceTypeId == _HAS_SUBTYPE and not r.IsForward
            ),
            None,
        )
    return False


class EdgeInternalServer(InternalServer):
    """asyncua's internal server, making :class:`EdgeSession` sessions."""

    def __init__(self, user_manager: Any, standard_nodes: StandardNodeCache | None = None) -> None:
        super().__init__(user_manager=user_manager)
        self.rules: AccessRules | None = None
        self.sessions: set[EdgeSession] = set()
        self.standard_nodes = standard_nodes

    async def load_standard_address_space(self, shelf_file: Path | None = None) -> None:
        # From the edge's cache when it has one (edge.serve.opcua.standard_nodes).
        cache = self.standard_nodes
        if cache is not None and cache.load_into(self.aspace):
            return
        await super().load_standard_address_space(shelf_file)
        if cache is not None:
            cache.start_builder()

    def create_session(
        self, name: str, user: User = _ANONYMOUS, external: bool = False
    ) -> InternalSession:
        if not external:
            return super().create_session(name, user, external)
        session = EdgeSession(self, name, user, external)
        self.sessions.add(session)
        return session

    def session_closed(self, session: EdgeSession) -> None:
        self.sessions.discard(session)

    @property
    def active_sessions(self) -> int:
        return sum(1 for s in self.sessions if s.state is SessionState.Activated)


# --------------------------------------------------------------------------- connections


class EdgeProcessor(UaProcessor):
    """One client connection's request processor (see the module docstring)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._return_diagnostics = 0

    async def _process_message(self, typeid: Any, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
        if typeid == _CREATE_SESSION:
            token = _CHANNEL_MODE.set(self._connection.security_policy.Mode)
            try:
                return await super()._process_message(typeid, requesthdr, seqhdr, body)  # type: ignore[no-untyped-call]
            finally:
                _CHANNEL_MODE.reset(token)
        if typeid == _CALL:
            # One request at a time per connection: the response is sent before the next.
            self._return_diagnostics = int(requesthdr.ReturnDiagnostics or 0)
            call_token = _CALL_CONTEXT.set(CallContext())
            try:
                return await super()._process_message(typeid, requesthdr, seqhdr, body)  # type: ignore[no-untyped-call]
            finally:
                _CALL_CONTEXT.reset(call_token)
        return await super()._process_message(typeid, requesthdr, seqhdr, body)  # type: ignore[no-untyped-call]

    def send_response(
        self,
        requesthandle: Any,
        seqhdr: Any,
        response: Any,
        msgtype: Any = ua.MessageType.SecureMessage,
    ) -> None:
        if isinstance(response, ua.CallResponse):
            context = _CALL_CONTEXT.get()
            if context is not None:
                add_call_diagnostics(response, context, self._return_diagnostics)
        super().send_response(requesthandle, seqhdr, response, msgtype)  # type: ignore[no-untyped-call]


class _Protocol(OPCUAProtocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.processor is not None:  # None: refused, at max_connections
            self.processor = EdgeProcessor(self.iserver, self.transport, self.limits)
            self.processor.set_policies(self.policies)  # type: ignore[no-untyped-call]


class _BinaryServer(BinaryServer):
    def _make_protocol(self) -> OPCUAProtocol:
        return _Protocol(
            iserver=self.iserver,
            policies=self._policies,
            clients=self.clients,
            closing_tasks=self.closing_tasks,
            limits=self.limits,
        )


class EdgeServer(Server):
    """asyncua's Server with the edge's connections and sessions."""

    def __init__(
        self,
        user_manager: Any,
        rules: AccessRules | None = None,
        standard_nodes: StandardNodeCache | None = None,
    ) -> None:
        iserver = EdgeInternalServer(user_manager, standard_nodes)
        iserver.rules = rules
        super().__init__(iserver=iserver)
        self._edge_iserver = iserver

    def set_access_rules(self, rules: AccessRules) -> None:
        self._edge_iserver.rules = rules

    @property
    def session_count(self) -> int:
        """Activated client sessions."""
        return self._edge_iserver.active_sessions

    @property
    def subscription_count(self) -> int:
        return len(self.iserver.subscription_service.subscriptions)

    async def start(self) -> None:
        # Server.start, with our protocol factory.
        if self.iserver.certificate is not None:
            uacrypto.check_certificate(
                self.iserver.certificate, self._application_uri, socket.gethostname()
            )
        await self._setup_server_nodes()
        await self.iserver.start()
        try:
            host, port = self._get_bind_socket_info()
            # asyncua's own Server.start passes the same possibly-None host and port.
            self.bserver = _BinaryServer(self.iserver, host, port, self.limits)  # type: ignore[arg-type]
            self.bserver.set_policies(self._policies)
            await self.bserver.start()
        except Exception:
            await self.iserver.stop()
            raise


def _good(value: ua.DataValue) -> bool:
    return value.StatusCode is None or bool(value.StatusCode.is_good())

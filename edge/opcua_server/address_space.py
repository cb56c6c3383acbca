"""Builds the address space: ObjectTypes from :mod:`edge.opcua_server.model`, then
instances of them under stable string NodeIds.

Each subtree is declared as node specs and loaded in one go by
:class:`edge.opcua_server.bulk.NodeLoader`; asyncua's own type instantiation and
its AddNodes service take seconds for the same tree (see that module).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server

from edge.opcua_server.bulk import NodeLoader, NodeSpec, ReferenceSpec
from edge.opcua_server.model import (
    OBJECT_TYPES,
    Member,
    Method,
    Obj,
    Var,
    type_node_id,
)
from edge.opcua_server.uaids import AttributeIds, ObjectIds, numeric, string
from edge.opcua_server.units import eu_information

_EPOCH = datetime.fromtimestamp(0, UTC)
_READ_ONLY = ua.AccessLevel.CurrentRead.mask

_DEFAULTS: dict[ua.VariantType, object] = {
    ua.VariantType.String: "",
    ua.VariantType.Double: 0.0,
    ua.VariantType.Float: 0.0,
    ua.VariantType.Boolean: False,
    ua.VariantType.DateTime: _EPOCH,
}


def default_value(vtype: ua.VariantType, array: bool = False) -> object:
    if array:
        return []
    return _DEFAULTS.get(vtype, 0)


@dataclass(frozen=True, slots=True)
class VarHandle:
    """Where a variable is and the VariantType every write must carry."""

    node_id: ua.NodeId
    vtype: ua.VariantType
    array: bool = False


MethodCallback = Callable[..., Awaitable[Any]]


_Attributes = tuple[tuple[AttributeIds, ua.Variant], ...]

_READ_ONLY_VARIABLE: _Attributes = (
    (AttributeIds.ValueRank, ua.Variant(ua.ValueRank.Scalar, ua.VariantType.Int32)),
    (AttributeIds.AccessLevel, ua.Variant(_READ_ONLY, ua.VariantType.Byte)),
    (AttributeIds.UserAccessLevel, ua.Variant(_READ_ONLY, ua.VariantType.Byte)),
    (AttributeIds.Historizing, ua.Variant(False, ua.VariantType.Boolean)),
)
_READ_ONLY_ARRAY: _Attributes = (
    (AttributeIds.ValueRank, ua.Variant(ua.ValueRank.OneDimension, ua.VariantType.Int32)),
    (AttributeIds.ArrayDimensions, ua.Variant([0], ua.VariantType.UInt32, is_array=True)),
    *_READ_ONLY_VARIABLE[1:],
)


def _description(text: str) -> _Attributes:
    if not text:
        return ()
    return ((AttributeIds.Description, ua.Variant(ua.LocalizedText(text))),)


class _Batch:
    """Nodes and extra references (modelling rules) of one subtree, loaded in one go.

    Each node gets the attributes that say something: the optional WriteMask,
    UserWriteMask and MinimumSamplingInterval (nothing here is writable, sampling
    follows the writes), ArrayDimensions of scalars and empty Descriptions are
    left out, as asyncua's defaults would not; a client reading an attribute a
    node does not have gets BadAttributeIdInvalid (Part 4 §5.10.2).
    """

    def __init__(self, idx: int) -> None:
        self.idx = idx
        self.nodes: list[NodeSpec] = []
        self.references: list[ReferenceSpec] = []

    def node_id(self, text: str) -> ua.NodeId:
        return string(text, self.idx)

    def add_object(
        self,
        node_id: str,
        name: str,
        parent: ua.NodeId,
        *,
        type_id: ua.NodeId,
        reference: int = ObjectIds.HasComponent,
        description: str = "",
        event_notifier: bool = False,
    ) -> ua.NodeId:
        created = self.node_id(node_id)
        notifier = ua.EventNotifier.SubscribeToEvents.mask if event_notifier else 0
        self.nodes.append(
            NodeSpec(
                node_id=created,
                browse_name=ua.QualifiedName(name, self.idx),
                node_class=ua.NodeClass.Object,
                parent=parent,
                reference_type=numeric(reference),
                type_definition=type_id,
                display_name=name,
                attributes=(
                    *_description(description),
                    (AttributeIds.EventNotifier, ua.Variant(notifier, ua.VariantType.Byte)),
                ),
            )
        )
        return created

    def add_object_type(self, node_id: str, name: str, description: str) -> ua.NodeId:
        created = self.node_id(node_id)
        self.nodes.append(
            NodeSpec(
                node_id=created,
                browse_name=ua.QualifiedName(name, self.idx),
                node_class=ua.NodeClass.ObjectType,
                parent=numeric(ObjectIds.BaseObjectType),
                reference_type=numeric(ObjectIds.HasSubtype),
                type_definition=ua.NodeId(),
                display_name=name,
                attributes=(
                    *_description(description),
                    (AttributeIds.IsAbstract, ua.Variant(False, ua.VariantType.Boolean)),
                ),
            )
        )
        return created

    def add_variable(
        self,
        node_id: str,
        var: Var,
        parent: ua.NodeId,
        *,
        reference: int = ObjectIds.HasComponent,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> VarHandle:
        handle = VarHandle(self.node_id(node_id), var.vtype, var.array)
        value = ua.Variant(default_value(var.vtype, var.array), var.vtype, is_array=var.array)
        self.nodes.append(
            NodeSpec(
                node_id=handle.node_id,
                browse_name=ua.QualifiedName(var.name, self.idx),
                node_class=ua.NodeClass.Variable,
                parent=parent,
                reference_type=numeric(reference),
                type_definition=numeric(ObjectIds.BaseDataVariableType),
                display_name=var.name,
                attributes=(
                    *_description(var.description),
                    (AttributeIds.Value, value),
                    (AttributeIds.DataType, ua.Variant(numeric(var.vtype.value))),
                    *(_READ_ONLY_ARRAY if var.array else _READ_ONLY_VARIABLE),
                ),
            )
        )
        if var.unit:
            self._add_property(
                f"{node_id}.EngineeringUnits",
                "EngineeringUnits",
                handle.node_id,
                numeric(ObjectIds.EUInformation),
                ua.Variant(eu_information(var.unit), ua.VariantType.ExtensionObject),
            )
        if minimum is not None and maximum is not None:
            self._add_property(
                f"{node_id}.EURange",
                "EURange",
                handle.node_id,
                numeric(ObjectIds.Range),
                ua.Variant(ua.Range(minimum, maximum), ua.VariantType.ExtensionObject),
            )
        return handle

    def _add_property(
        self, node_id: str, name: str, parent: ua.NodeId, data_type: ua.NodeId, value: ua.Variant
    ) -> None:
        self.nodes.append(
            NodeSpec(
                node_id=self.node_id(node_id),
                # Standard property names live in namespace 0 (clients look them up by name).
                browse_name=ua.QualifiedName(name, 0),
                node_class=ua.NodeClass.Variable,
                parent=parent,
                reference_type=numeric(ObjectIds.HasProperty),
                type_definition=numeric(ObjectIds.PropertyType),
                display_name=name,
                attributes=(
                    (AttributeIds.Value, value),
                    (AttributeIds.DataType, ua.Variant(data_type)),
                    *_READ_ONLY_VARIABLE,
                ),
            )
        )

    def mandatory(self, node_id: ua.NodeId) -> None:
        self.references.append(
            ReferenceSpec(
                node_id,
                numeric(ObjectIds.HasModellingRule),
                numeric(ObjectIds.ModellingRule_Mandatory),
            )
        )


class AddressSpace:
    """The namespace's nodes and the handles live values are written through."""

    def __init__(self, server: Server, idx: int, loader: NodeLoader | None = None) -> None:
        self.server = server
        self.idx = idx
        self.handles: dict[str, VarHandle] = {}
        self.type_ids: dict[str, ua.NodeId] = {}
        self._loader = loader or NodeLoader(server.iserver.aspace)

    def node_id(self, text: str) -> ua.NodeId:
        return string(text, self.idx)

    def handle(self, text: str) -> VarHandle:
        return self.handles[text]

    async def _send(self, batch: _Batch) -> None:
        self._loader.add(batch.nodes, batch.references)

    # ------------------------------------------------------------------ types

    async def build_types(self) -> None:
        """Every ObjectType of the model, members marked Mandatory."""
        batch = _Batch(self.idx)
        for type_name, (description, _members) in OBJECT_TYPES.items():
            self.type_ids[type_name] = batch.add_object_type(
                type_node_id(type_name), type_name, description
            )
        await self._send(batch)
        for type_name, (_description, members) in OBJECT_TYPES.items():
            batch = _Batch(self.idx)
            type_id = self.type_ids[type_name]
            for member in members:
                if isinstance(member, Var):
                    handle = batch.add_variable(
                        type_node_id(type_name, member.name), member, type_id
                    )
                    batch.mandatory(handle.node_id)
                elif isinstance(member, Obj):
                    child = batch.add_object(
                        type_node_id(type_name, member.name),
                        member.name,
                        type_id,
                        type_id=self._type_of(member),
                        description=member.description,
                    )
                    batch.mandatory(child)
            await self._send(batch)

    def _type_of(self, member: Obj) -> ua.NodeId:
        if member.type_name is None:
            return numeric(ObjectIds.FolderType)
        return self.type_ids[member.type_name]

    # ------------------------------------------------------------------ instances

    async def add_folder(
        self, node_id: str, name: str, parent: ua.NodeId, description: str = ""
    ) -> ua.NodeId:
        batch = _Batch(self.idx)
        created = batch.add_object(
            node_id,
            name,
            parent,
            type_id=numeric(ObjectIds.FolderType),
            reference=ObjectIds.Organizes,
            description=description,
        )
        await self._send(batch)
        return created

    async def add_object(
        self,
        node_id: str,
        name: str,
        parent: ua.NodeId,
        description: str = "",
        *,
        reference: int = ObjectIds.HasComponent,
        event_notifier: bool = False,
        variables: Iterable[Var] = (),
    ) -> ua.NodeId:
        """A plain object (BaseObjectType) with variables of its own."""
        batch = _Batch(self.idx)
        created = batch.add_object(
            node_id,
            name,
            parent,
            type_id=numeric(ObjectIds.BaseObjectType),
            reference=reference,
            description=description,
            event_notifier=event_notifier,
        )
        for var in variables:
            text = f"{node_id}.{var.name}"
            self.handles[text] = batch.add_variable(text, var, created)
        await self._send(batch)
        return created

    async def add_instance(
        self,
        node_id: str,
        name: str,
        type_name: str,
        parent: ua.NodeId,
        *,
        reference: int = ObjectIds.Organizes,
        description: str = "",
    ) -> ua.NodeId:
        """An instance of one of the model's ObjectTypes with all its members (methods
        excepted: they need callbacks, see :meth:`add_method`)."""
        batch = _Batch(self.idx)
        created = batch.add_object(
            node_id,
            name,
            parent,
            type_id=self.type_ids[type_name],
            reference=reference,
            description=description,
            event_notifier=True,
        )
        self._add_members(batch, node_id, created, OBJECT_TYPES[type_name][1])
        await self._send(batch)
        return created

    def _add_members(
        self, batch: _Batch, node_id: str, parent: ua.NodeId, members: Sequence[Member]
    ) -> None:
        for member in members:
            text = f"{node_id}.{member.name}"
            if isinstance(member, Var):
                self.handles[text] = batch.add_variable(text, member, parent)
            elif isinstance(member, Obj):
                child = batch.add_object(
                    text,
                    member.name,
                    parent,
                    type_id=self._type_of(member),
                    description=member.description,
                )
                if member.type_name is not None:
                    self._add_members(batch, text, child, OBJECT_TYPES[member.type_name][1])
            elif isinstance(member, Method):
                continue

    async def add_variables(
        self,
        parent_text: str,
        variables: Iterable[tuple[Var, float | None, float | None]],
    ) -> None:
        """Variables below an existing object (a machine's process values), with an
        EURange where both limits are known."""
        batch = _Batch(self.idx)
        parent = self.node_id(parent_text)
        for var, minimum, maximum in variables:
            text = f"{parent_text}.{var.name}"
            self.handles[text] = batch.add_variable(
                text, var, parent, minimum=minimum, maximum=maximum
            )
        if batch.nodes:
            await self._send(batch)

    async def add_method(
        self,
        parent: ua.NodeId,
        node_id: str,
        name: str,
        *,
        callback: MethodCallback,
        inputs: Sequence[ua.Argument],
        outputs: Sequence[ua.Argument],
        description: str,
        mandatory: bool = False,
    ) -> Node:
        node: Node = await self.server.get_node(parent).add_method(
            self.node_id(node_id),
            ua.QualifiedName(name, self.idx),
            callback,
            list(inputs),
            list(outputs),
        )
        await node.write_attribute(
            AttributeIds.Description,
            ua.DataValue(ua.Variant(ua.LocalizedText(description), ua.VariantType.LocalizedText)),
        )
        if mandatory:
            await node.set_modelling_rule(True)
        return node

    async def delete(self, node_id: str) -> None:
        """Remove an object and everything below it (an order that left the line)."""
        prefix = f"{node_id}."
        for text in [t for t in self.handles if t == node_id or t.startswith(prefix)]:
            del self.handles[text]
        await self.server.delete_nodes(
            [self.server.get_node(self.node_id(node_id))], recursive=True
        )

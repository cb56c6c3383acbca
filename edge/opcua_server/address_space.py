"""Builds the address space: ObjectTypes from :mod:`edge.opcua_server.model`, then
instances of them under stable string NodeIds.

Nodes are added in bulk through the server's internal session (one AddNodes call
per subtree), which starts 50 machines with ~3,500 nodes in well under a second;
asyncua's own type instantiation takes seconds for the same tree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server

from edge.errors import EdgeError
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

# Attributes each node is created with. asyncua's defaults also specify the optional
# WriteMask, UserWriteMask, MinimumSamplingInterval and (for scalars) ArrayDimensions,
# which say nothing here (nothing is writable, sampling follows the writes) and cost
# ~0.3 kB apiece in memory across ~9,000 nodes. A client reading an attribute a node
# does not have gets BadAttributeIdInvalid, as Part 4 §5.10.2 prescribes.
_MASK = ua.NodeAttributesMask
_OBJECT_ATTRIBUTES = _MASK.DisplayName | _MASK.EventNotifier
_OBJECT_TYPE_ATTRIBUTES = _MASK.DisplayName | _MASK.IsAbstract
_VARIABLE_ATTRIBUTES = (
    _MASK.DisplayName
    | _MASK.Value
    | _MASK.DataType
    | _MASK.ValueRank
    | _MASK.AccessLevel
    | _MASK.UserAccessLevel
    | _MASK.Historizing
)


def _specified(base: int, description: str, *, array: bool = False) -> int:
    mask = base | (_MASK.Description if description else 0)
    return mask | (_MASK.ArrayDimensions if array else 0)


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


class _Batch:
    """AddNodes items and extra references (modelling rules), sent in one go."""

    def __init__(self, idx: int) -> None:
        self.idx = idx
        self.items: list[ua.AddNodesItem] = []
        self.references: list[ua.AddReferencesItem] = []

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
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = created
        item.BrowseName = ua.QualifiedName(name, self.idx)
        item.NodeClass = ua.NodeClass.Object
        item.ParentNodeId = parent
        item.ReferenceTypeId = numeric(reference)
        item.TypeDefinition = type_id
        attrs = ua.ObjectAttributes()
        attrs.DisplayName = ua.LocalizedText(name)
        attrs.Description = ua.LocalizedText(description)
        if event_notifier:
            attrs.EventNotifier = ua.EventNotifier.SubscribeToEvents.mask
        attrs.SpecifiedAttributes = _specified(_OBJECT_ATTRIBUTES, description)
        item.NodeAttributes = attrs
        self.items.append(item)
        return created

    def add_object_type(self, node_id: str, name: str, description: str) -> ua.NodeId:
        created = self.node_id(node_id)
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = created
        item.BrowseName = ua.QualifiedName(name, self.idx)
        item.NodeClass = ua.NodeClass.ObjectType
        item.ParentNodeId = numeric(ObjectIds.BaseObjectType)
        item.ReferenceTypeId = numeric(ObjectIds.HasSubtype)
        attrs = ua.ObjectTypeAttributes()
        attrs.DisplayName = ua.LocalizedText(name)
        attrs.Description = ua.LocalizedText(description)
        attrs.IsAbstract = False
        attrs.SpecifiedAttributes = _specified(_OBJECT_TYPE_ATTRIBUTES, description)
        item.NodeAttributes = attrs
        self.items.append(item)
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
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = handle.node_id
        item.BrowseName = ua.QualifiedName(var.name, self.idx)
        item.NodeClass = ua.NodeClass.Variable
        item.ParentNodeId = parent
        item.ReferenceTypeId = numeric(reference)
        item.TypeDefinition = numeric(ObjectIds.BaseDataVariableType)
        attrs = ua.VariableAttributes()
        attrs.DisplayName = ua.LocalizedText(var.name)
        attrs.Description = ua.LocalizedText(var.description)
        attrs.DataType = numeric(var.vtype.value)
        attrs.ValueRank = ua.ValueRank.OneDimension if var.array else ua.ValueRank.Scalar
        if var.array:
            attrs.ArrayDimensions = [0]
        attrs.Value = ua.Variant(default_value(var.vtype, var.array), var.vtype, is_array=var.array)
        attrs.AccessLevel = _READ_ONLY
        attrs.UserAccessLevel = _READ_ONLY
        attrs.SpecifiedAttributes = _specified(
            _VARIABLE_ATTRIBUTES, var.description, array=var.array
        )
        item.NodeAttributes = attrs
        self.items.append(item)
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
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = self.node_id(node_id)
        # Standard property names live in namespace 0 (clients look them up by name).
        item.BrowseName = ua.QualifiedName(name, 0)
        item.NodeClass = ua.NodeClass.Variable
        item.ParentNodeId = parent
        item.ReferenceTypeId = numeric(ObjectIds.HasProperty)
        item.TypeDefinition = numeric(ObjectIds.PropertyType)
        attrs = ua.VariableAttributes()
        attrs.DisplayName = ua.LocalizedText(name)
        attrs.DataType = data_type
        attrs.ValueRank = ua.ValueRank.Scalar
        attrs.Value = value
        attrs.AccessLevel = _READ_ONLY
        attrs.UserAccessLevel = _READ_ONLY
        attrs.SpecifiedAttributes = _VARIABLE_ATTRIBUTES
        item.NodeAttributes = attrs
        self.items.append(item)

    def mandatory(self, node_id: ua.NodeId) -> None:
        ref = ua.AddReferencesItem()
        ref.SourceNodeId = node_id
        ref.ReferenceTypeId = numeric(ObjectIds.HasModellingRule)
        ref.IsForward = True
        ref.TargetNodeId = numeric(ObjectIds.ModellingRule_Mandatory)
        ref.TargetNodeClass = ua.NodeClass.Object
        self.references.append(ref)


class AddressSpace:
    """The namespace's nodes and the handles live values are written through."""

    def __init__(self, server: Server, idx: int) -> None:
        self.server = server
        self.idx = idx
        self.handles: dict[str, VarHandle] = {}
        self.type_ids: dict[str, ua.NodeId] = {}

    def node_id(self, text: str) -> ua.NodeId:
        return string(text, self.idx)

    def handle(self, text: str) -> VarHandle:
        return self.handles[text]

    async def _send(self, batch: _Batch) -> None:
        session = self.server.iserver.isession
        results = await session.add_nodes(batch.items)
        for item, result in zip(batch.items, results, strict=True):
            if not result.StatusCode.is_good():
                raise EdgeError(
                    f"OPC UA address space: cannot add {item.RequestedNewNodeId.to_string()}: "
                    f"{result.StatusCode.name}"
                )
        if batch.references:
            for status in await session.add_references(batch.references):
                status.check()

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
        if batch.items:
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

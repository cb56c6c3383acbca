"""Builds the address space: ObjectTypes from :mod:`edge.serve.opcua.model` in the
fixed types namespace, then instances of them (and of standard and companion
types, :mod:`edge.serve.opcua.instances`) in the line's namespace under stable
string NodeIds.

A member's BrowseName is in the types namespace on the type and on every
instance, so a browse path made for one line's MachineType works on every line;
the NodeIds of instances are the line's. Variables with a unit are
AnalogUnitType (OPC UA Part 8) with EngineeringUnits and, where the range is
known, EURange; a range without a unit makes an AnalogItemType.

Each subtree is declared as node specs and loaded in one go by
:class:`edge.serve.opcua.bulk.NodeLoader`; asyncua's own type instantiation and
its AddNodes service take seconds for the same tree (see that module).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asyncua import ua
from asyncua.common.node import Node
from asyncua.server.server import Server

from edge.serve.opcua.bulk import NodeLoader, NodeSpec, ReferenceSpec
from edge.serve.opcua.instances import MANDATORY, Declaration, Declarations
from edge.serve.opcua.model import (
    OBJECT_TYPES,
    Member,
    Method,
    Obj,
    Var,
    type_node_id,
)
from edge.serve.opcua.uaids import AttributeIds, ObjectIds, numeric, string
from edge.serve.opcua.units import eu_information

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


@functools.cache
def _units_variant(unit: str) -> ua.Variant:
    """One Variant per unit: the loader shares constant values by their Variant."""
    return ua.Variant(eu_information(unit), ua.VariantType.ExtensionObject)


@functools.cache
def _range_variant(low: float, high: float) -> ua.Variant:
    return ua.Variant(ua.Range(low, high), ua.VariantType.ExtensionObject)


@functools.cache
def _description(text: str) -> _Attributes:
    if not text:
        return ()
    return ((AttributeIds.Description, ua.Variant(ua.LocalizedText(text))),)


@functools.cache
def _notifier(subscribe: bool) -> tuple[AttributeIds, ua.Variant]:
    notifier = ua.EventNotifier.SubscribeToEvents.mask if subscribe else 0
    return (AttributeIds.EventNotifier, ua.Variant(notifier, ua.VariantType.Byte))


@functools.cache
def _data_type(vtype: ua.VariantType) -> tuple[AttributeIds, ua.Variant]:
    return (AttributeIds.DataType, ua.Variant(numeric(vtype.value)))


class _Batch:
    """Nodes and extra references (modelling rules) of one subtree, loaded in one go.

    Each node gets the attributes that say something: the optional WriteMask,
    UserWriteMask and MinimumSamplingInterval (nothing here is writable, sampling
    follows the writes), ArrayDimensions of scalars and empty Descriptions are
    left out, as asyncua's defaults would not; a client reading an attribute a
    node does not have gets BadAttributeIdInvalid (Part 4 §5.10.2).
    """

    def __init__(self, idx: int, names: int | None = None) -> None:
        self.idx = idx  # of NodeIds
        self.names = idx if names is None else names  # of member BrowseNames
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
        member: bool = False,
    ) -> ua.NodeId:
        """``member``: a type's member (its BrowseName in the types namespace)."""
        created = self.node_id(node_id)
        self.nodes.append(
            NodeSpec(
                node_id=created,
                browse_name=ua.QualifiedName(name, self.names if member else self.idx),
                node_class=ua.NodeClass.Object,
                parent=parent,
                reference_type=numeric(reference),
                type_definition=type_id,
                display_name=name,
                attributes=(*_description(description), _notifier(event_notifier)),
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
        member: bool = True,
        declaration: bool = False,
    ) -> VarHandle:
        """``member``: a type's member (BrowseName in the types namespace);
        ``declaration``: on the type itself (its properties are Mandatory too)."""
        handle = VarHandle(self.node_id(node_id), var.vtype, var.array)
        value = ua.Variant(default_value(var.vtype, var.array), var.vtype, is_array=var.array)
        if var.unit:
            type_definition = ObjectIds.AnalogUnitType
        elif var.range is not None:
            type_definition = ObjectIds.AnalogItemType
        else:
            type_definition = ObjectIds.BaseDataVariableType
        self.nodes.append(
            NodeSpec(
                node_id=handle.node_id,
                browse_name=ua.QualifiedName(var.name, self.names if member else self.idx),
                node_class=ua.NodeClass.Variable,
                parent=parent,
                reference_type=numeric(reference),
                type_definition=numeric(type_definition),
                display_name=var.name,
                attributes=(
                    *_description(var.description),
                    (AttributeIds.Value, value),
                    _data_type(var.vtype),
                    *(_READ_ONLY_ARRAY if var.array else _READ_ONLY_VARIABLE),
                ),
            )
        )
        if var.unit:
            unit = self._add_property(
                f"{node_id}.EngineeringUnits",
                "EngineeringUnits",
                handle.node_id,
                numeric(ObjectIds.EUInformation),
                _units_variant(var.unit),
            )
            if declaration:
                self.mandatory(unit)
        if var.range is not None:
            limits = self._add_property(
                f"{node_id}.EURange",
                "EURange",
                handle.node_id,
                numeric(ObjectIds.Range),
                _range_variant(*var.range),
            )
            if declaration:
                self.mandatory(limits)
        return handle

    def _add_property(
        self, node_id: str, name: str, parent: ua.NodeId, data_type: ua.NodeId, value: ua.Variant
    ) -> ua.NodeId:
        created = self.node_id(node_id)
        self.nodes.append(
            NodeSpec(
                node_id=created,
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
                constant=True,
            )
        )
        return created

    def add_declared(
        self,
        node_id: str,
        name: ua.QualifiedName,
        parent: ua.NodeId,
        type_id: ua.NodeId,
        members: Sequence[Declaration],
        *,
        reference: int,
        handles: Callable[[str, VarHandle], None] | None,
    ) -> ua.NodeId:
        """An object of a standard or companion type with its members' nodes, each
        variable's handle given to ``handles`` (None: declarations on one of our
        types, each Mandatory)."""
        created = self.node_id(node_id)
        self.nodes.append(
            NodeSpec(
                node_id=created,
                browse_name=name,
                node_class=ua.NodeClass.Object,
                parent=parent,
                reference_type=numeric(reference),
                type_definition=type_id,
                display_name=str(name.Name),
                attributes=(_notifier(False),),
            )
        )
        self._declared(node_id, created, members, handles)
        return created

    def _declared(
        self,
        text: str,
        parent: ua.NodeId,
        members: Sequence[Declaration],
        handles: Callable[[str, VarHandle], None] | None,
    ) -> None:
        for member in members:
            if member.node_class is ua.NodeClass.Method:
                # The type's method node itself (see edge.serve.opcua.instances).
                self.references.append(
                    ReferenceSpec(parent, member.reference_type, member.declaration)
                )
                continue
            child_text = f"{text}.{member.name}"
            child = self.node_id(child_text)
            attributes = list(member.attributes)
            if member.node_class is ua.NodeClass.Variable:
                attributes.append((AttributeIds.Value, member.value or ua.Variant(None)))
            self.nodes.append(
                NodeSpec(
                    node_id=child,
                    browse_name=member.browse_name,
                    node_class=member.node_class,
                    parent=parent,
                    reference_type=member.reference_type,
                    type_definition=member.type_definition,
                    display_name=member.name,
                    attributes=tuple(attributes),
                )
            )
            if handles is None:
                self.mandatory(child)
            elif member.node_class is ua.NodeClass.Variable:
                rank = dict(member.attributes).get(AttributeIds.ValueRank)
                array = rank is not None and isinstance(rank.Value, int) and rank.Value >= 1
                handles(child_text, VarHandle(child, member.vtype, array))
            self._declared(child_text, child, member.children, handles)

    def mandatory(self, node_id: ua.NodeId) -> None:
        self.references.append(
            ReferenceSpec(
                node_id,
                numeric(ObjectIds.HasModellingRule),
                numeric(ObjectIds.ModellingRule_Mandatory),
            )
        )


class AddressSpace:
    """The line's nodes and the handles live values are written through.

    ``idx``: the line's namespace (instance NodeIds); ``types_idx``: the fixed
    types namespace (ObjectTypes and the BrowseNames of their members); the same
    one when not given (a test's single namespace).
    """

    def __init__(
        self,
        server: Server,
        idx: int,
        loader: NodeLoader | None = None,
        *,
        types_idx: int | None = None,
    ) -> None:
        self.server = server
        self.idx = idx
        self.types_idx = idx if types_idx is None else types_idx
        self.handles: dict[str, VarHandle] = {}
        self._recorders: list[dict[str, VarHandle]] = []
        self.type_ids: dict[str, ua.NodeId] = {}
        self._loader = loader or NodeLoader(server.iserver.aspace)
        self.declarations = Declarations(server.iserver.aspace)

    def node_id(self, text: str) -> ua.NodeId:
        return string(text, self.idx)

    def type_node(self, text: str) -> ua.NodeId:
        return string(text, self.types_idx)

    def handle(self, text: str) -> VarHandle:
        return self.handles[text]

    def _keep(self, text: str, handle: VarHandle) -> None:
        self.handles[text] = handle
        for recorded in self._recorders:
            recorded[text] = handle

    @contextlib.contextmanager
    def recording(self) -> Iterator[dict[str, VarHandle]]:
        """The handles added while the block runs (one object's, without scanning all)."""
        recorded: dict[str, VarHandle] = {}
        self._recorders.append(recorded)
        try:
            yield recorded
        finally:
            self._recorders.remove(recorded)

    def _batch(self) -> _Batch:
        return _Batch(self.idx, self.types_idx)

    async def _send(self, batch: _Batch) -> None:
        self._loader.add(batch.nodes, batch.references)

    # ------------------------------------------------------------------ types

    async def build_types(self) -> None:
        """Every ObjectType of the model, members marked Mandatory."""
        batch = _Batch(self.types_idx)
        for type_name, (description, _members) in OBJECT_TYPES.items():
            self.type_ids[type_name] = batch.add_object_type(
                type_node_id(type_name), type_name, description
            )
        await self._send(batch)
        for type_name, (_description, members) in OBJECT_TYPES.items():
            batch = _Batch(self.types_idx)
            type_id = self.type_ids[type_name]
            for member in members:
                if isinstance(member, Var):
                    handle = batch.add_variable(
                        type_node_id(type_name, member.name), member, type_id, declaration=True
                    )
                    batch.mandatory(handle.node_id)
                elif isinstance(member, Obj):
                    child = batch.add_object(
                        type_node_id(type_name, member.name),
                        member.name,
                        type_id,
                        type_id=self._type_of(member),
                        description=member.description,
                        member=True,
                    )
                    batch.mandatory(child)
            await self._send(batch)

    def _type_of(self, member: Obj) -> ua.NodeId:
        if member.type_name is None:
            return numeric(ObjectIds.FolderType)
        return self.type_ids[member.type_name]

    async def declare(
        self,
        type_name: str,
        type_id: ua.NodeId,
        name: ua.QualifiedName,
        *,
        reference: int = ObjectIds.HasComponent,
        optional: Iterable[str] = (),
        rule: ua.NodeId = MANDATORY,
        under: str | None = None,
    ) -> None:
        """A member of one of the model's types that is an instance of a standard or
        companion ``type_id`` (an alarm, the Machinery identification), with its
        own members, as an InstanceDeclaration with the modelling ``rule``;
        ``under``: below an earlier such member (its NodeId path in the type)."""
        batch = _Batch(self.types_idx)
        path = (under, str(name.Name)) if under else (str(name.Name),)
        text = type_node_id(type_name, *path)
        owner = (
            self.type_node(type_node_id(type_name, under)) if under else self.type_ids[type_name]
        )
        created = batch.add_declared(
            text,
            name,
            owner,
            type_id,
            self.declarations.of(type_id, optional),
            reference=reference,
            handles=None,
        )
        batch.references.append(ReferenceSpec(created, numeric(ObjectIds.HasModellingRule), rule))
        await self._send(batch)

    # ------------------------------------------------------------------ instances

    async def add_folder(
        self, node_id: str, name: str, parent: ua.NodeId, description: str = ""
    ) -> ua.NodeId:
        batch = self._batch()
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
        batch = self._batch()
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
            self._keep(text, batch.add_variable(text, var, created, member=False))
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
        batch = self._batch()
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
                self._keep(text, batch.add_variable(text, member, parent))
            elif isinstance(member, Obj):
                child = batch.add_object(
                    text,
                    member.name,
                    parent,
                    type_id=self._type_of(member),
                    description=member.description,
                    member=True,
                )
                if member.type_name is not None:
                    self._add_members(batch, text, child, OBJECT_TYPES[member.type_name][1])
            elif isinstance(member, Method):
                continue

    async def add_declared(
        self,
        node_id: str,
        name: ua.QualifiedName,
        parent: ua.NodeId,
        type_id: ua.NodeId,
        *,
        optional: Iterable[str] = (),
        reference: int = ObjectIds.HasComponent,
        extra: Sequence[ReferenceSpec] = (),
    ) -> ua.NodeId:
        """An instance of a standard or companion ObjectType (``type_id``) with its
        InstanceDeclarations; each variable's handle under ``<node_id>.<path>``."""
        batch = self._batch()
        created = batch.add_declared(
            node_id,
            name,
            parent,
            type_id,
            self.declarations.of(type_id, optional),
            reference=reference,
            handles=self._keep,
        )
        batch.references.extend(extra)
        await self._send(batch)
        return created

    async def add_references(self, references: Sequence[ReferenceSpec]) -> None:
        batch = self._batch()
        batch.references.extend(references)
        await self._send(batch)

    async def add_variables(
        self,
        parent_text: str,
        variables: Iterable[Var],
    ) -> None:
        """Variables below an existing object (a machine's process values)."""
        batch = self._batch()
        parent = self.node_id(parent_text)
        for var in variables:
            text = f"{parent_text}.{var.name}"
            self._keep(text, batch.add_variable(text, var, parent, member=False))
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
        """A method; on a type (``mandatory``) its NodeId is in the types namespace."""
        node: Node = await self.server.get_node(parent).add_method(
            self.type_node(node_id) if mandatory else self.node_id(node_id),
            ua.QualifiedName(name, self.types_idx),
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

"""Instances of types the address space did not declare itself: the companion
specifications' (Machinery identification and state, the PackML state machine)
and the standard alarm types (OffNormalAlarmType, AlarmConditionType).

:class:`Declarations` reads a type's InstanceDeclarations from the node store,
as OPC UA Part 3 §6 defines them: the forward hierarchical children of the type
and of each of its supertypes (a subtype's child overrides its supertype's of the
same BrowseName) that have the Mandatory modelling rule, or Optional when asked
for by BrowseName; each child's own children likewise, from its declaration and
its type definition. :meth:`AddressSpace.add_declared
<edge.serve.opcua.address_space.AddressSpace.add_declared>` turns them into
nodes. Methods are not copied: an instance refers to the type's method node
(Part 3 allows a Method to be a component of several objects), and whoever
serves the method binds it there once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from asyncua import ua
from asyncua.server.address_space import AddressSpace, NodeData

from edge.errors import EdgeError
from edge.serve.opcua.uaids import AttributeIds, ObjectIds, numeric

_HIERARCHICAL = frozenset(
    numeric(i)
    for i in (
        ObjectIds.HasComponent,
        ObjectIds.HasProperty,
        ObjectIds.HasOrderedComponent,
        ObjectIds.HasAddIn,
    )
)
_HAS_SUBTYPE = numeric(ObjectIds.HasSubtype)
_HAS_TYPE_DEFINITION = numeric(ObjectIds.HasTypeDefinition)
_HAS_MODELLING_RULE = numeric(ObjectIds.HasModellingRule)
MANDATORY = numeric(ObjectIds.ModellingRule_Mandatory)
OPTIONAL = numeric(ObjectIds.ModellingRule_Optional)
_ROOTS = frozenset(numeric(i) for i in (ObjectIds.BaseObjectType, ObjectIds.BaseVariableType))

# The attributes an instance copies from its declaration (Part 3 §6.4.4.4).
_COPIED = (
    AttributeIds.Description,
    AttributeIds.EventNotifier,
    AttributeIds.DataType,
    AttributeIds.ValueRank,
    AttributeIds.ArrayDimensions,
    AttributeIds.AccessLevel,
    AttributeIds.UserAccessLevel,
    AttributeIds.Historizing,
)


@dataclass(frozen=True, slots=True)
class Declaration:
    """One InstanceDeclaration: what an instance's child of that name is."""

    browse_name: ua.QualifiedName
    node_class: ua.NodeClass
    reference_type: ua.NodeId
    type_definition: ua.NodeId
    attributes: tuple[tuple[AttributeIds, ua.Variant], ...]
    children: tuple[Declaration, ...]
    declaration: ua.NodeId  # the declaring node (a method's node, to refer to)
    value: ua.Variant | None = None  # the declaration's value, if it has one
    vtype: ua.VariantType = ua.VariantType.Null  # of the value, for writes

    @property
    def name(self) -> str:
        return str(self.browse_name.Name)

    def child(self, name: str) -> Declaration:
        for child in self.children:
            if child.name == name:
                return child
        raise EdgeError(f"OPC UA type member {self.name} has no child {name!r}")


class Declarations:
    """InstanceDeclarations of the types in one node store, read once per type."""

    def __init__(self, aspace: AddressSpace) -> None:
        self._aspace = aspace
        self._cache: dict[tuple[ua.NodeId, frozenset[str]], tuple[Declaration, ...]] = {}

    def of(self, type_id: ua.NodeId, optional: Iterable[str] = ()) -> tuple[Declaration, ...]:
        """The members of an instance of ``type_id``; ``optional``: Optional members
        to include, by BrowseName."""
        key = (type_id, frozenset(optional))
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._members(type_id, key[1])
        return found

    def _node(self, node_id: ua.NodeId) -> NodeData:
        data = self._aspace.get(node_id)
        if data is None:
            raise EdgeError(f"OPC UA address space: type node {node_id.to_string()} is missing")
        return data

    def _supertypes(self, type_id: ua.NodeId) -> list[ua.NodeId]:
        chain = [type_id]
        current = type_id
        while current not in _ROOTS:
            parent = next(
                (
                    r.NodeId
                    for r in self._node(current).references
                    if r.ReferenceTypeId == _HAS_SUBTYPE and not r.IsForward
                ),
                None,
            )
            if parent is None:
                break
            chain.append(parent)
            current = parent
        return chain

    def _members(self, type_id: ua.NodeId, optional: frozenset[str]) -> tuple[Declaration, ...]:
        by_name: dict[str, Declaration] = {}
        for owner in reversed(self._supertypes(type_id)):  # the most derived last: it wins
            for declaration in self._children(owner, optional):
                by_name[declaration.name] = declaration
        return tuple(by_name.values())

    def _children(self, owner: ua.NodeId, optional: frozenset[str]) -> list[Declaration]:
        found: list[Declaration] = []
        for ref in self._node(owner).references:
            if not ref.IsForward or ref.ReferenceTypeId not in _HIERARCHICAL:
                continue
            data = self._node(ref.NodeId)
            rule = next(
                (r.NodeId for r in data.references if r.ReferenceTypeId == _HAS_MODELLING_RULE),
                None,
            )
            name = str(ref.BrowseName.Name)
            if rule == MANDATORY or (rule == OPTIONAL and name in optional):
                found.append(self._declaration(ref, data))
        return found

    def _declaration(self, ref: ua.ReferenceDescription, data: NodeData) -> Declaration:
        type_definition = next(
            (
                r.NodeId
                for r in data.references
                if r.ReferenceTypeId == _HAS_TYPE_DEFINITION and r.IsForward
            ),
            ua.NodeId(),
        )
        node_class = ref.NodeClass
        children: tuple[Declaration, ...] = ()
        if node_class in (ua.NodeClass.Object, ua.NodeClass.Variable):
            merged = {d.name: d for d in self.of(type_definition)}
            merged.update({d.name: d for d in self._children(ref.NodeId, frozenset())})
            children = tuple(merged.values())
        attributes = tuple(
            (attribute, stored.value.Value)
            for attribute in _COPIED
            if (stored := data.attributes.get(attribute)) is not None
            and stored.value is not None
            and stored.value.Value is not None
        )
        value = data.attributes.get(AttributeIds.Value)
        variant = value.value.Value if value is not None and value.value is not None else None
        return Declaration(
            browse_name=ref.BrowseName,
            node_class=node_class,
            reference_type=ref.ReferenceTypeId,
            type_definition=type_definition,
            attributes=attributes,
            children=children,
            declaration=ref.NodeId,
            value=variant if variant is not None and variant.Value is not None else None,
            vtype=self.variant_type(dict(attributes).get(AttributeIds.DataType)),
        )

    def variant_type(self, data_type: ua.Variant | None) -> ua.VariantType:
        """The built-in type a value of ``data_type`` is written as (Part 6 §5.1.2)."""
        if data_type is None or not isinstance(data_type.Value, ua.NodeId):
            return ua.VariantType.Null
        current: ua.NodeId | None = data_type.Value
        while current is not None:
            if current.NamespaceIndex == 0 and isinstance(current.Identifier, int):
                if 1 <= current.Identifier <= 25:
                    return ua.VariantType(current.Identifier)
                if current.Identifier == ObjectIds.Enumeration:
                    return ua.VariantType.Int32
            data = self._aspace.get(current)
            if data is None:
                break
            current = next(
                (
                    r.NodeId
                    for r in data.references
                    if r.ReferenceTypeId == _HAS_SUBTYPE and not r.IsForward
                ),
                None,
            )
        return ua.VariantType.Variant

"""Writes the line's nodes straight into asyncua's node store.

asyncua's AddNodes service checks each item for any client: it scans the
parent's references once per child (quadratic in a folder's size), walks its
24 attribute names per node, and reads the parent and the type definition
back through the attribute service to fill the reverse references. For the
~9,000 nodes of a 50-machine line that was half of the service's start, and
every node carried its own copy of attribute values that are the same on all
machines.

The nodes built here come from one declaration table
(:mod:`edge.serve.opcua.model`), so they are valid by construction; this
loader stores the NodeData the AddNodes service would store — the same
attributes and the same references in both directions, which
``tests/integration/opcua_server/test_bulk_load.py`` checks node for node
against asyncua's own service — and shares the DataValues of attributes that
never change (node class, data type, value rank, access levels, names and
descriptions repeated on every machine). Sharing is safe: asyncua replaces a
stored DataValue on write and never mutates one in place.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC
from typing import Any, cast

from asyncua import ua
from asyncua.server.address_space import AddressSpace, AttributeValue, NodeData

from edge.errors import EdgeError
from edge.serve.opcua.uaids import AttributeIds, ObjectIds, numeric

_HAS_TYPE_DEFINITION = numeric(ObjectIds.HasTypeDefinition)
_NO_NODE = ua.NodeId()


class StoredAttribute:
    """What asyncua's ``AttributeValue`` holds, in a quarter of its memory.

    asyncua keeps one AttributeValue per attribute of every node: an object with
    its own ``__dict__`` and an empty dict for data-change callbacks, ~220 bytes,
    about 120,000 of them for a 50-machine line. This one has slots and makes its
    callback dict only when a monitored item registers one (asyncua reads and
    writes the four fields by name, nothing else).

    It also holds a value that nobody watches as the recipe of its DataValue
    (:meth:`defer`), made when something reads it: a line's live values change
    ~1,000 times a second, and building and storing a DataValue for each is most
    of what the OPC UA server costs while no client subscribes to them. And a
    value may have a ``before_read`` hook, which stages its newest value when it
    is read, for values whose source is asked only then.
    """

    __slots__ = (
        "_callbacks",
        "_deferred",
        "_value",
        "before_read",
        "value_callback",
        "value_setter",
    )

    def __init__(self, value: ua.DataValue | None) -> None:
        self._value = value
        self._deferred: Callable[[], ua.DataValue] | None = None
        self.value_callback: Callable[..., ua.DataValue] | None = None
        self.value_setter: Callable[..., None] | None = None
        self._callbacks: dict[int, Callable[..., Any]] | None = None
        # Called before every read: brings the value up to date when its source was
        # not asked since it last changed (a machine's status nobody watches).
        self.before_read: Callable[[], None] | None = None

    @property
    def value(self) -> ua.DataValue | None:
        before = self.before_read
        if before is not None:
            before()
        deferred = self._deferred
        if deferred is not None:
            self._deferred = None
            self._value = deferred()
        return self._value

    @value.setter
    def value(self, value: ua.DataValue | None) -> None:
        self._deferred = None
        self._value = value

    @property
    def watched(self) -> bool:
        """Whether a write must happen now: a monitored item or a setter waits on it."""
        return bool(self._callbacks) or self.value_setter is not None

    def defer(self, make: Callable[[], ua.DataValue]) -> None:
        """The value is what ``make`` returns, made when it is first read (unwatched only)."""
        self._deferred = make

    @property
    def datachange_callbacks(self) -> dict[int, Callable[..., Any]]:
        if self._callbacks is None:
            self._callbacks = {}
        return self._callbacks

    def __repr__(self) -> str:
        return f"StoredAttribute({self.value})"


# A node attribute for asyncua's node store: a StoredAttribute, which asyncua uses
# exactly like its own AttributeValue (typed as one for the NodeData it goes into).
stored = cast(Callable[[ua.DataValue | None], AttributeValue], StoredAttribute)


def compact(aspace: AddressSpace) -> int:
    """Store the plain attributes of nodes asyncua made (its standard address space)
    as :class:`StoredAttribute` too; the number replaced. Attributes with a
    callback or a setter stay as they are."""
    replaced = 0
    every = aspace.keys()  # it has keys() but no __iter__
    for node_id in list(every):
        attributes = aspace[node_id].attributes
        for attribute, value in attributes.items():
            if (
                type(value) is AttributeValue
                and value.value_callback is None
                and value.value_setter is None
                and not value.datachange_callbacks
            ):
                attributes[attribute] = stored(value.value)
                replaced += 1
    return replaced


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node to add: what an AddNodesItem says, with its attributes already
    resolved to (attribute, Variant) pairs besides NodeId, BrowseName, NodeClass
    and DisplayName (the loader adds those four)."""

    node_id: ua.NodeId
    browse_name: ua.QualifiedName
    node_class: ua.NodeClass
    parent: ua.NodeId
    reference_type: ua.NodeId
    type_definition: ua.NodeId
    display_name: str
    attributes: tuple[tuple[AttributeIds, ua.Variant], ...]
    constant: bool = False  # its Value never changes: shared like the other attributes


@dataclass(frozen=True, slots=True)
class ReferenceSpec:
    """A one-way reference, as the AddReferences service adds it (modelling rules)."""

    source: ua.NodeId
    reference_type: ua.NodeId
    target: ua.NodeId


class NodeLoader:
    """Adds :class:`NodeSpec` nodes to one server's address space."""

    def __init__(self, aspace: AddressSpace) -> None:
        self._aspace = aspace
        self._shared: dict[Hashable, ua.DataValue] = {}
        # constant values by the identity of their Variant (one Variant, one DataValue)
        self._constants: dict[int, tuple[ua.Variant, ua.DataValue]] = {}
        self._by_variant: dict[int, tuple[ua.Variant, AttributeIds, ua.DataValue]] = {}
        self._type_definitions: dict[ua.NodeId, ua.NodeId] = {}
        self._descriptions: dict[tuple[ua.NodeId, ua.NodeId, bool], ua.ReferenceDescription] = {}

    def shared(self, key: Hashable, variant: ua.Variant) -> ua.DataValue:
        """One DataValue for every attribute with the same ``key``."""
        value = self._shared.get(key)
        if value is None:
            value = self._shared[key] = ua.DataValue(variant)
        return value

    def add(self, nodes: Iterable[NodeSpec], references: Iterable[ReferenceSpec] = ()) -> None:
        """Store the nodes in order (a node's parent may come earlier in ``nodes``),
        then the references."""
        now = ua.DateTime.now(UTC)
        for spec in nodes:
            self._add_node(spec, now)
        for ref in references:
            self._add_reference(ref)

    def _node(self, node_id: ua.NodeId, role: str, of: ua.NodeId) -> NodeData:
        data = self._aspace.get(node_id)
        if data is None:
            raise EdgeError(
                f"OPC UA address space: cannot add {of.to_string()}: its {role} "
                f"{node_id.to_string()} does not exist"
            )
        return data

    def _shared_attribute(self, attribute: AttributeIds, variant: ua.Variant) -> ua.DataValue:
        """The shared DataValue of an attribute; found by the Variant's identity first
        (most come from the same constant or cached Variant), else by its value."""
        entry = self._by_variant.get(id(variant))
        if entry is not None and entry[0] is variant and entry[1] is attribute:
            return entry[2]
        value = self.shared((attribute, variant.VariantType, _key(variant.Value)), variant)
        self._by_variant[id(variant)] = (variant, attribute, value)  # holds the Variant
        return value

    def _add_node(self, spec: NodeSpec, now: ua.DateTime) -> None:
        if spec.node_id in self._aspace:
            raise EdgeError(
                f"OPC UA address space: cannot add {spec.node_id.to_string()}: "
                "a node with that NodeId exists"
            )
        parent = self._node(spec.parent, "parent", spec.node_id)
        type_node = (
            self._node(spec.type_definition, "type definition", spec.node_id)
            if spec.type_definition != _NO_NODE
            else None
        )
        data = NodeData(spec.node_id)
        attributes = data.attributes
        attributes[AttributeIds.NodeId] = stored(
            ua.DataValue(ua.Variant(spec.node_id, ua.VariantType.NodeId))
        )
        browse_name = spec.browse_name
        attributes[AttributeIds.BrowseName] = stored(
            self.shared(
                ("browse", browse_name.Name, browse_name.NamespaceIndex),
                ua.Variant(browse_name, ua.VariantType.QualifiedName),
            )
        )
        attributes[AttributeIds.NodeClass] = stored(
            self.shared(
                ("class", spec.node_class), ua.Variant(spec.node_class, ua.VariantType.Int32)
            )
        )
        shown = self._shared.get(("display", spec.display_name))
        if shown is None:
            shown = self.shared(
                ("display", spec.display_name), ua.Variant(ua.LocalizedText(spec.display_name))
            )
        attributes[AttributeIds.DisplayName] = stored(shown)
        display_name = shown.Value.Value if shown.Value is not None else None
        for attribute, variant in spec.attributes:
            if attribute is AttributeIds.Value and spec.constant:
                entry = self._constants.get(id(variant))
                if entry is None or entry[0] is not variant:
                    entry = (variant, ua.DataValue(variant, SourceTimestamp=now))
                    self._constants[id(variant)] = entry  # holds the Variant: its id stays its
                value = entry[1]
            elif attribute is AttributeIds.Value:
                # Stamped like AddNodes stamps a new value; replaced by the first write.
                value = ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)
            else:
                value = self._shared_attribute(attribute, variant)
            attributes[attribute] = stored(value)
        self._aspace[spec.node_id] = data
        if type_node is not None:
            self._type_definitions[spec.node_id] = spec.type_definition

        parent.references.append(
            ua.ReferenceDescription(
                ReferenceTypeId=spec.reference_type,
                IsForward=True,
                NodeId=spec.node_id,
                BrowseName=browse_name,
                DisplayName=display_name,
                NodeClass=spec.node_class,
                TypeDefinition=spec.type_definition,
            )
        )
        data.references.append(
            self._description_of(spec.parent, parent, spec.reference_type, is_forward=False)
        )
        if type_node is not None:
            data.references.append(
                self._description_of(
                    spec.type_definition, type_node, _HAS_TYPE_DEFINITION, is_forward=True
                )
            )

    def _add_reference(self, ref: ReferenceSpec) -> None:
        source = self._node(ref.source, "reference source", ref.source)
        target = self._node(ref.target, "reference target", ref.source)
        source.references.append(
            self._description_of(ref.target, target, ref.reference_type, is_forward=True)
        )

    def _description_of(
        self, node_id: ua.NodeId, data: NodeData, reference_type: ua.NodeId, *, is_forward: bool
    ) -> ua.ReferenceDescription:
        """A reference to an existing node, named from its attributes; one object for
        every node that refers to the same node the same way (siblings to their
        parent, instances to their type): asyncua only reads these, and renames
        the referred-to node's copies in place, which keeps a shared one right."""
        key = (node_id, reference_type, is_forward)
        known = self._descriptions.get(key)
        if known is None:
            known = self._descriptions[key] = self._describe(
                node_id, data, reference_type, is_forward=is_forward
            )
        return known

    def _describe(
        self, node_id: ua.NodeId, data: NodeData, reference_type: ua.NodeId, *, is_forward: bool
    ) -> ua.ReferenceDescription:
        stored_class = _value(data, AttributeIds.NodeClass)
        node_class = ua.NodeClass(stored_class) if isinstance(stored_class, int) else None
        type_definition = _NO_NODE
        if node_class in (ua.NodeClass.Object, ua.NodeClass.Variable):
            type_definition = self._type_definition(node_id, data)
        return ua.ReferenceDescription(
            ReferenceTypeId=reference_type,
            IsForward=is_forward,
            NodeId=node_id,
            BrowseName=_value(data, AttributeIds.BrowseName) or ua.QualifiedName(),
            DisplayName=_value(data, AttributeIds.DisplayName) or ua.LocalizedText(),
            NodeClass=node_class if node_class is not None else ua.NodeClass.Unspecified,
            TypeDefinition=type_definition,
        )

    def _type_definition(self, node_id: ua.NodeId, data: NodeData) -> ua.NodeId:
        known = self._type_definitions.get(node_id)
        if known is None:
            known = next(
                (
                    ref.NodeId
                    for ref in data.references
                    if ref.IsForward and ref.ReferenceTypeId == _HAS_TYPE_DEFINITION
                ),
                _NO_NODE,
            )
            self._type_definitions[node_id] = known
        return known


def _value(data: NodeData, attribute: AttributeIds) -> object:
    stored = data.attributes.get(attribute)
    if stored is None or stored.value is None or stored.value.Value is None:
        return None
    return stored.value.Value.Value


def _key(value: object) -> Hashable:
    """A hashable stand-in for an attribute value (LocalizedText and lists are not)."""
    if isinstance(value, ua.LocalizedText):
        return ("text", value.Locale, value.Text)
    if isinstance(value, list):
        return ("list", *value)
    if isinstance(value, Hashable):
        return (type(value), value)
    raise EdgeError(f"OPC UA address space: unshareable attribute value {value!r}")

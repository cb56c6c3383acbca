"""The OPC Foundation's companion specifications the address space uses, loaded from
the published NodeSet2 XML files shipped in this package (``nodeset_files/``).

- OPC 10000-100 Devices (DI): the base of Machinery;
- OPC 10000-200 Industrial Automation (IA): Machinery refers to its types;
- OPC 40001-1 Machinery: machine identification and ``MachineryItemState``;
- OPC 30050 PackML: the PackML state machine.

The files are the OPC Foundation's, unchanged, with their MIT licence header
(``nodeset_files/README.md`` says where each comes from).

Why not asyncua's ``import_xml``: it adds every node through the AddNodes
service and generates Python classes for every structure, which costs seconds
per start, and it rejects the DI file's DesignToolOnly nodes. This loader reads
the XML with ElementTree and stores the nodes straight into the node store,
with the references in both directions, as the bulk loader does for the line
(:mod:`edge.serve.opcua.bulk`). It knows the value encodings these files use
(scalars, lists, LocalizedText, QualifiedName, Argument, EnumValueType) and
fails with the file, node and element named on anything else, so a newer file
with new encodings is caught by the tests, not by a client.

Structures and enumerations get their DataTypeDefinition attribute (clients read
it to decode values); no instance here carries a value of a structure defined in
these files, so asyncua needs no Python class for them.
"""

from __future__ import annotations

import base64
import datetime as dt
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asyncua import ua
from asyncua.server.address_space import AddressSpace, NodeData
from asyncua.ua.uaerrors import UaError

from edge.errors import EdgeError
from edge.serve.opcua.bulk import stored
from edge.serve.opcua.uaids import AttributeIds, ObjectIds, numeric

NODESET_DIR = Path(__file__).parent / "nodeset_files"
DI_URI = "http://opcfoundation.org/UA/DI/"
IA_URI = "http://opcfoundation.org/UA/IA/"
MACHINERY_URI = "http://opcfoundation.org/UA/Machinery/"
PACKML_URI = "http://opcfoundation.org/UA/PackML/"

# In load order: each file's required models come before it.
COMPANION_NODESETS = (
    "Opc.Ua.Di.NodeSet2.xml",
    "Opc.Ua.IA.NodeSet2.xml",
    "Opc.Ua.Machinery.NodeSet2.xml",
    "Opc.Ua.PackML.NodeSet2.xml",
)

_NS = "{http://opcfoundation.org/UA/2011/03/UANodeSet.xsd}"
_TYPES = "{http://opcfoundation.org/UA/2008/02/Types.xsd}"

_NODE_CLASSES = {
    "UAObject": ua.NodeClass.Object,
    "UAVariable": ua.NodeClass.Variable,
    "UAMethod": ua.NodeClass.Method,
    "UAObjectType": ua.NodeClass.ObjectType,
    "UAVariableType": ua.NodeClass.VariableType,
    "UADataType": ua.NodeClass.DataType,
    "UAReferenceType": ua.NodeClass.ReferenceType,
    "UAView": ua.NodeClass.View,
}

_HAS_TYPE_DEFINITION = numeric(ObjectIds.HasTypeDefinition)
_HAS_SUBTYPE = numeric(ObjectIds.HasSubtype)
_HAS_ENCODING = numeric(ObjectIds.HasEncoding)
_NO_NODE = ua.NodeId()


def _datetime(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


_SCALARS: dict[str, tuple[ua.VariantType, Callable[[str], object]]] = {
    "Boolean": (ua.VariantType.Boolean, lambda t: t.strip().lower() == "true"),
    "SByte": (ua.VariantType.SByte, int),
    "Byte": (ua.VariantType.Byte, int),
    "Int16": (ua.VariantType.Int16, int),
    "UInt16": (ua.VariantType.UInt16, int),
    "Int32": (ua.VariantType.Int32, int),
    "UInt32": (ua.VariantType.UInt32, int),
    "Int64": (ua.VariantType.Int64, int),
    "UInt64": (ua.VariantType.UInt64, int),
    "Float": (ua.VariantType.Float, float),
    "Double": (ua.VariantType.Double, float),
    "String": (ua.VariantType.String, str),
    "DateTime": (ua.VariantType.DateTime, _datetime),
    "ByteString": (ua.VariantType.ByteString, base64.b64decode),
}


@dataclass(slots=True)
class _Node:
    node_id: ua.NodeId
    node_class: ua.NodeClass
    browse_name: ua.QualifiedName
    display_name: ua.LocalizedText
    attributes: dict[AttributeIds, ua.Variant] = field(default_factory=dict)
    references: list[tuple[ua.NodeId, bool, ua.NodeId]] = field(default_factory=list)
    definition: ET.Element | None = None


@dataclass(frozen=True, slots=True)
class NodesetStatistics:
    files: int
    nodes: int
    references: int


class _File:
    """One NodeSet2 file: its namespace and alias tables, mapped to the server's."""

    def __init__(self, path: Path, root: ET.Element, namespace_index: Callable[[str], int]) -> None:
        self.path = path
        self.root = root
        uris = [u.text or "" for u in root.iterfind(f"{_NS}NamespaceUris/{_NS}Uri")]
        # file index -> server index; 0 is always the OPC UA namespace
        self.namespaces = [0, *(namespace_index(uri) for uri in uris)]
        self.aliases = {
            a.get("Alias", ""): (a.text or "").strip()
            for a in root.iterfind(f"{_NS}Aliases/{_NS}Alias")
        }
        self._parsed: dict[str, ua.NodeId] = {}

    def problem(self, where: str, what: str) -> EdgeError:
        return EdgeError(f"OPC UA nodeset {self.path.name}: {where}: {what}")

    def ns(self, index: int, where: str) -> int:
        if not 0 <= index < len(self.namespaces):
            raise self.problem(where, f"namespace index {index} is not in its NamespaceUris")
        return self.namespaces[index]

    def node_id(self, text: str | None, where: str) -> ua.NodeId:
        if text is None:
            raise self.problem(where, "a NodeId is missing")
        known = self._parsed.get(text)
        if known is None:
            known = self._parsed[text] = self._node_id(text, where)
        return known

    def _node_id(self, text: str, where: str) -> ua.NodeId:
        text = self.aliases.get(text.strip(), text.strip())
        try:
            parsed = ua.NodeId.from_string(text)
        except UaError as exc:
            raise self.problem(where, f"not a NodeId: {text!r}") from exc
        if parsed.NamespaceIndex == 0:
            return parsed
        return ua.NodeId(parsed.Identifier, ua.Int16(self.ns(parsed.NamespaceIndex, where)))

    def qualified_name(self, text: str, where: str) -> ua.QualifiedName:
        prefix, colon, name = text.partition(":")
        if colon and prefix.isdigit():
            return ua.QualifiedName(name, ua.UInt16(self.ns(int(prefix), where)))
        return ua.QualifiedName(text, ua.UInt16(0))


def _text(element: ET.Element | None) -> str:
    return (element.text or "") if element is not None else ""


def _localized(element: ET.Element | None) -> ua.LocalizedText:
    if element is None:
        return ua.LocalizedText()
    locale = element.get("Locale") or None
    return ua.LocalizedText(_text(element), locale)


class NodesetLoader:
    """Loads NodeSet2 files into one server's node store."""

    def __init__(self, aspace: AddressSpace, namespace_index: Callable[[str], int]) -> None:
        self._aspace = aspace
        self._namespace_index = namespace_index
        self._shared: dict[tuple[object, ...], ua.DataValue] = {}

    def load(self, paths: Sequence[Path]) -> NodesetStatistics:
        nodes: dict[ua.NodeId, _Node] = {}
        references = 0
        files = [
            _File(path, ET.parse(path).getroot(), self._namespace_index)  # our own files
            for path in paths
        ]
        for file in files:
            for element in file.root:
                node_class = _NODE_CLASSES.get(element.tag.removeprefix(_NS))
                if node_class is None or element.get("DesignToolOnly") == "true":
                    continue
                node = self._parse(file, element, node_class)
                if node.node_id in self._aspace or node.node_id in nodes:
                    raise file.problem(node.node_id.to_string(), "defined twice")
                nodes[node.node_id] = node
        for node in nodes.values():
            self._store(node)
        for file in files:
            for element in file.root:
                if (
                    element.tag.removeprefix(_NS) == "UADataType"
                    and element.get("DesignToolOnly") != "true"
                ):
                    node = nodes[file.node_id(element.get("NodeId"), "UADataType")]
                    self._definition(file, node)
        references = self._link(nodes.values())
        return NodesetStatistics(len(files), len(nodes), references)

    # -- parsing ------------------------------------------------------------------------

    def _parse(self, file: _File, element: ET.Element, node_class: ua.NodeClass) -> _Node:
        where = element.get("NodeId") or element.tag
        node = _Node(
            node_id=file.node_id(element.get("NodeId"), where),
            node_class=node_class,
            browse_name=file.qualified_name(element.get("BrowseName", ""), where),
            display_name=_localized(element.find(f"{_NS}DisplayName")),
        )
        attributes = node.attributes
        description = element.find(f"{_NS}Description")
        if description is not None:
            attributes[AttributeIds.Description] = ua.Variant(_localized(description))
        attributes[AttributeIds.WriteMask] = ua.Variant(0, ua.VariantType.UInt32)
        attributes[AttributeIds.UserWriteMask] = ua.Variant(0, ua.VariantType.UInt32)
        if node_class in (
            ua.NodeClass.ObjectType,
            ua.NodeClass.VariableType,
            ua.NodeClass.DataType,
            ua.NodeClass.ReferenceType,
        ):
            abstract = element.get("IsAbstract", "false") == "true"
            attributes[AttributeIds.IsAbstract] = ua.Variant(abstract, ua.VariantType.Boolean)
        if node_class is ua.NodeClass.ReferenceType:
            symmetric = element.get("Symmetric", "false") == "true"
            attributes[AttributeIds.Symmetric] = ua.Variant(symmetric, ua.VariantType.Boolean)
            inverse = element.find(f"{_NS}InverseName")
            if inverse is not None:
                attributes[AttributeIds.InverseName] = ua.Variant(_localized(inverse))
        if node_class in (ua.NodeClass.Object, ua.NodeClass.View):
            notifier = int(element.get("EventNotifier", "0"))
            attributes[AttributeIds.EventNotifier] = ua.Variant(notifier, ua.VariantType.Byte)
        if node_class is ua.NodeClass.Method:
            executable = element.get("Executable", "true") == "true"
            attributes[AttributeIds.Executable] = ua.Variant(executable, ua.VariantType.Boolean)
            user = element.get("UserExecutable", "true") == "true"
            attributes[AttributeIds.UserExecutable] = ua.Variant(user, ua.VariantType.Boolean)
        if node_class in (ua.NodeClass.Variable, ua.NodeClass.VariableType):
            self._variable(file, element, node, where)
        if node_class is ua.NodeClass.DataType:
            node.definition = element.find(f"{_NS}Definition")
        for ref in element.iterfind(f"{_NS}References/{_NS}Reference"):
            node.references.append(
                (
                    file.node_id(ref.get("ReferenceType"), where),
                    ref.get("IsForward", "true") != "false",
                    file.node_id(ref.text, where),
                )
            )
        return node

    def _variable(self, file: _File, element: ET.Element, node: _Node, where: str) -> None:
        attributes = node.attributes
        data_type = file.node_id(element.get("DataType", "i=24"), where)
        attributes[AttributeIds.DataType] = ua.Variant(data_type, ua.VariantType.NodeId)
        rank = int(element.get("ValueRank", "-1"))
        attributes[AttributeIds.ValueRank] = ua.Variant(rank, ua.VariantType.Int32)
        dimensions = element.get("ArrayDimensions")
        if dimensions:
            sizes = [int(d) for d in dimensions.split(",")]
            attributes[AttributeIds.ArrayDimensions] = ua.Variant(
                sizes, ua.VariantType.UInt32, is_array=True
            )
        if node.node_class is ua.NodeClass.Variable:
            level = int(element.get("AccessLevel", "1"))
            user_level = int(element.get("UserAccessLevel", str(level)))
            attributes[AttributeIds.AccessLevel] = ua.Variant(level, ua.VariantType.Byte)
            attributes[AttributeIds.UserAccessLevel] = ua.Variant(user_level, ua.VariantType.Byte)
            interval = float(element.get("MinimumSamplingInterval", "0"))
            attributes[AttributeIds.MinimumSamplingInterval] = ua.Variant(
                interval, ua.VariantType.Double
            )
            historizing = element.get("Historizing", "false") == "true"
            attributes[AttributeIds.Historizing] = ua.Variant(historizing, ua.VariantType.Boolean)
        value = element.find(f"{_NS}Value")
        if value is not None and len(value):
            attributes[AttributeIds.Value] = self._value(file, value[0], where)
        elif node.node_class is ua.NodeClass.Variable:
            attributes[AttributeIds.Value] = ua.Variant(None)

    # -- values ---------------------------------------------------------------------------

    def _value(self, file: _File, element: ET.Element, where: str) -> ua.Variant:
        tag = element.tag.removeprefix(_TYPES)
        if tag.startswith("ListOf"):
            kind = tag.removeprefix("ListOf")
            items = [self._scalar(file, kind, child, where) for child in element]
            vtype = self._variant_type(file, kind, where)
            return ua.Variant([v for v, _ in items], vtype, is_array=True)
        value, vtype = self._scalar(file, tag, element, where)
        return ua.Variant(value, vtype)

    def _variant_type(self, file: _File, kind: str, where: str) -> ua.VariantType:
        if kind in _SCALARS:
            return _SCALARS[kind][0]
        known = {
            "LocalizedText": ua.VariantType.LocalizedText,
            "QualifiedName": ua.VariantType.QualifiedName,
            "NodeId": ua.VariantType.NodeId,
            "ExtensionObject": ua.VariantType.ExtensionObject,
        }
        if kind not in known:
            raise file.problem(where, f"value encoding {kind!r} is not supported")
        return known[kind]

    def _scalar(
        self, file: _File, kind: str, element: ET.Element, where: str
    ) -> tuple[object, ua.VariantType]:
        if kind in _SCALARS:
            vtype, parse = _SCALARS[kind]
            return parse(_text(element)), vtype
        if kind == "LocalizedText":
            return self._typed_localized(element), ua.VariantType.LocalizedText
        if kind == "QualifiedName":
            index = int(_text(element.find(f"{_TYPES}NamespaceIndex")) or "0")
            name = _text(element.find(f"{_TYPES}Name"))
            return ua.QualifiedName(name, ua.UInt16(file.ns(index, where))), (
                ua.VariantType.QualifiedName
            )
        if kind == "NodeId":
            return file.node_id(_text(element.find(f"{_TYPES}Identifier")), where), (
                ua.VariantType.NodeId
            )
        if kind == "ExtensionObject":
            return self._extension_object(file, element, where), ua.VariantType.ExtensionObject
        raise file.problem(where, f"value encoding {kind!r} is not supported")

    @staticmethod
    def _typed_localized(element: ET.Element | None) -> ua.LocalizedText:
        if element is None:
            return ua.LocalizedText()
        locale = _text(element.find(f"{_TYPES}Locale")) or None
        return ua.LocalizedText(_text(element.find(f"{_TYPES}Text")), locale)

    def _extension_object(self, file: _File, element: ET.Element, where: str) -> object:
        body = element.find(f"{_TYPES}Body")
        if body is None or not len(body):
            raise file.problem(where, "an ExtensionObject without a body")
        content = body[0]
        kind = content.tag.removeprefix(_TYPES)
        if kind == "Argument":
            argument = ua.Argument()
            argument.Name = _text(content.find(f"{_TYPES}Name"))
            argument.DataType = file.node_id(
                _text(content.find(f"{_TYPES}DataType/{_TYPES}Identifier")), where
            )
            argument.ValueRank = int(_text(content.find(f"{_TYPES}ValueRank")) or "-1")
            argument.ArrayDimensions = [
                int(_text(d)) for d in content.iterfind(f"{_TYPES}ArrayDimensions/{_TYPES}UInt32")
            ]
            argument.Description = self._typed_localized(content.find(f"{_TYPES}Description"))
            return argument
        if kind == "EnumValueType":
            enum_value = ua.EnumValueType()
            enum_value.Value = int(_text(content.find(f"{_TYPES}Value")) or "0")
            enum_value.DisplayName = self._typed_localized(content.find(f"{_TYPES}DisplayName"))
            enum_value.Description = self._typed_localized(content.find(f"{_TYPES}Description"))
            return enum_value
        raise file.problem(where, f"ExtensionObject body {kind!r} is not supported")

    # -- storing ------------------------------------------------------------------------

    def _store(self, node: _Node) -> None:
        data = NodeData(node.node_id)
        attributes = data.attributes
        attributes[AttributeIds.NodeId] = stored(
            ua.DataValue(ua.Variant(node.node_id, ua.VariantType.NodeId))
        )
        attributes[AttributeIds.NodeClass] = stored(
            ua.DataValue(ua.Variant(node.node_class, ua.VariantType.Int32))
        )
        attributes[AttributeIds.BrowseName] = stored(
            ua.DataValue(ua.Variant(node.browse_name, ua.VariantType.QualifiedName))
        )
        attributes[AttributeIds.DisplayName] = stored(
            ua.DataValue(ua.Variant(node.display_name, ua.VariantType.LocalizedText))
        )
        now = ua.DateTime.now(dt.UTC)
        for attribute, variant in node.attributes.items():
            if attribute is AttributeIds.Value:
                value = ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now)
            elif isinstance(variant.Value, bool | int | float | str | ua.NodeId):
                # Shared like the bulk loader shares: asyncua replaces a stored
                # DataValue on write, never mutates it.
                key = (attribute, variant.VariantType, type(variant.Value), variant.Value)
                value = self._shared.get(key) or self._shared.setdefault(key, ua.DataValue(variant))
            else:
                value = ua.DataValue(variant)
            attributes[attribute] = stored(value)
        self._aspace[node.node_id] = data

    def _definition(self, file: _File, node: _Node) -> None:
        definition = node.definition
        if definition is None:
            return
        where = node.node_id.to_string()
        fields = definition.findall(f"{_NS}Field")
        value: object
        if any(f.get("Value") is not None for f in fields) or self._is_enum(node):
            enum = ua.EnumDefinition()
            for item in fields:
                enum_field = ua.EnumField()
                enum_field.Name = item.get("Name", "")
                enum_field.Value = int(item.get("Value", "0"))
                enum_field.DisplayName = ua.LocalizedText(item.get("Name", ""))
                enum_field.Description = _localized(item.find(f"{_NS}Description"))
                enum.Fields.append(enum_field)
            value = enum
        else:
            structure = ua.StructureDefinition()
            structure.BaseDataType = self._supertype(node) or numeric(ObjectIds.Structure)
            structure.DefaultEncodingId = self._default_encoding(node)
            optional = any(f.get("IsOptional") == "true" for f in fields)
            if definition.get("IsUnion") == "true":
                structure.StructureType = ua.StructureType.Union
            elif optional:
                structure.StructureType = ua.StructureType.StructureWithOptionalFields
            for item in fields:
                struct_field = ua.StructureField()
                struct_field.Name = item.get("Name", "")
                struct_field.DataType = file.node_id(item.get("DataType", "i=24"), where)
                struct_field.ValueRank = int(item.get("ValueRank", "-1"))
                dims = item.get("ArrayDimensions")
                struct_field.ArrayDimensions = [int(d) for d in dims.split(",")] if dims else []
                struct_field.IsOptional = item.get("IsOptional") == "true"
                struct_field.Description = _localized(item.find(f"{_NS}Description"))
                structure.Fields.append(struct_field)
            value = structure
        self._aspace[node.node_id].attributes[AttributeIds.DataTypeDefinition] = stored(
            ua.DataValue(ua.Variant(value, ua.VariantType.ExtensionObject))
        )

    def _is_enum(self, node: _Node) -> bool:
        supertype = self._supertype(node)
        return supertype == numeric(ObjectIds.Enumeration)

    @staticmethod
    def _supertype(node: _Node) -> ua.NodeId | None:
        for ref_type, forward, target in node.references:
            if ref_type == _HAS_SUBTYPE and not forward:
                return target
        return None

    def _default_encoding(self, node: _Node) -> ua.NodeId:
        for ref_type, forward, target in node.references:
            if ref_type == _HAS_ENCODING and forward:
                encoding = self._aspace.get(target)
                name = _attribute(encoding, AttributeIds.BrowseName) if encoding else None
                if isinstance(name, ua.QualifiedName) and name.Name == "Default Binary":
                    return target
        return _NO_NODE

    def _link(self, nodes: Iterable[_Node]) -> int:
        """Both directions of every reference, each once."""
        seen: set[tuple[ua.NodeId, ua.NodeId, ua.NodeId]] = set()
        count = 0
        every = [(node, ref) for node in nodes for ref in node.references]
        # Type definitions first: a reference to a node names its type definition.
        every.sort(key=lambda item: item[1][0] != _HAS_TYPE_DEFINITION)
        for node, (ref_type, forward, target) in every:
            source, destination = (node.node_id, target) if forward else (target, node.node_id)
            key = (source, ref_type, destination)
            if key in seen:
                continue
            seen.add(key)
            self._add(source, ref_type, destination, is_forward=True)
            self._add(destination, ref_type, source, is_forward=False)
            count += 1
        return count

    def _add(
        self, holder: ua.NodeId, ref_type: ua.NodeId, target: ua.NodeId, *, is_forward: bool
    ) -> None:
        data = self._aspace.get(holder)
        other = self._aspace.get(target)
        if data is None or other is None:
            missing = holder if data is None else target
            raise EdgeError(
                f"OPC UA nodesets: a reference names {missing.to_string()}, which no "
                "loaded nodeset or the standard address space defines"
            )
        data.references.append(describe(target, other, ref_type, is_forward=is_forward))


def _attribute(data: NodeData | None, attribute: AttributeIds) -> object:
    if data is None:
        return None
    stored = data.attributes.get(attribute)
    if stored is None or stored.value is None or stored.value.Value is None:
        return None
    return stored.value.Value.Value


def describe(
    node_id: ua.NodeId, data: NodeData, reference_type: ua.NodeId, *, is_forward: bool
) -> ua.ReferenceDescription:
    """A reference to ``data``'s node, named from its attributes."""
    stored_class = _attribute(data, AttributeIds.NodeClass)
    node_class = ua.NodeClass(stored_class) if isinstance(stored_class, int) else None
    type_definition = _NO_NODE
    if node_class in (ua.NodeClass.Object, ua.NodeClass.Variable):
        type_definition = next(
            (
                ref.NodeId
                for ref in data.references
                if ref.IsForward and ref.ReferenceTypeId == _HAS_TYPE_DEFINITION
            ),
            _NO_NODE,
        )
    browse_name = _attribute(data, AttributeIds.BrowseName)
    display_name = _attribute(data, AttributeIds.DisplayName)
    return ua.ReferenceDescription(
        ReferenceTypeId=reference_type,
        IsForward=is_forward,
        NodeId=node_id,
        BrowseName=browse_name if isinstance(browse_name, ua.QualifiedName) else ua.QualifiedName(),
        DisplayName=(
            display_name if isinstance(display_name, ua.LocalizedText) else ua.LocalizedText()
        ),
        NodeClass=node_class if node_class is not None else ua.NodeClass.Unspecified,
        TypeDefinition=type_definition,
    )

"""The bulk loader stores exactly what asyncua's AddNodes and AddReferences services
would: the same subtree built both ways in two real asyncua servers is compared
node for node — every attribute's value and type, every reference in order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.server.address_space import NodeData

from edge.errors import EdgeError
from edge.serve.opcua.address_space import AddressSpace
from edge.serve.opcua.bulk import NodeLoader, NodeSpec, ReferenceSpec
from edge.serve.opcua.model import MACHINE_TYPE, ORDER_TYPE, QUALITY_STATION_TYPE, Var
from edge.serve.opcua.uaids import ObjectIds, numeric

pytestmark = pytest.mark.integration

NAMESPACE = "urn:test:bulk"
TYPES = "urn:test:bulk:types"
_ATTRIBUTES = {
    ua.NodeClass.Object: ua.ObjectAttributes,
    ua.NodeClass.ObjectType: ua.ObjectTypeAttributes,
    ua.NodeClass.Variable: ua.VariableAttributes,
}


class RecordingLoader(NodeLoader):
    """Loads like NodeLoader and keeps what it was given, for the other server."""

    def __init__(self, server: Server) -> None:
        super().__init__(server.iserver.aspace)
        self.batches: list[tuple[list[NodeSpec], list[ReferenceSpec]]] = []

    def add(self, nodes: Iterable[NodeSpec], references: Iterable[ReferenceSpec] = ()) -> None:
        batch = (list(nodes), list(references))
        self.batches.append(batch)
        super().add(*batch)


def add_nodes_item(spec: NodeSpec) -> ua.AddNodesItem:
    """The AddNodes request a client would send for ``spec``."""
    attrs: Any = _ATTRIBUTES[spec.node_class]()
    attrs.DisplayName = ua.LocalizedText(spec.display_name)
    mask = ua.NodeAttributesMask.DisplayName
    for attribute, variant in spec.attributes:
        name = attribute.name
        setattr(attrs, name, variant if name == "Value" else variant.Value)
        mask |= getattr(ua.NodeAttributesMask, name)
    attrs.SpecifiedAttributes = mask
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = spec.node_id
    item.BrowseName = spec.browse_name
    item.NodeClass = spec.node_class
    item.ParentNodeId = spec.parent
    item.ReferenceTypeId = spec.reference_type
    item.TypeDefinition = spec.type_definition
    item.NodeAttributes = attrs
    return item


def add_references_item(ref: ReferenceSpec) -> ua.AddReferencesItem:
    item = ua.AddReferencesItem()
    item.SourceNodeId = ref.source
    item.ReferenceTypeId = ref.reference_type
    item.IsForward = True
    item.TargetNodeId = ref.target
    item.TargetNodeClass = ua.NodeClass.Unspecified
    return item


async def new_server() -> tuple[Server, int]:
    server = Server()
    await server.init()
    idx = await server.register_namespace(NAMESPACE)
    await server.register_namespace(TYPES)
    return server, idx


def attributes_of(node: NodeData) -> dict[ua.AttributeIds, tuple[object, object]]:
    out: dict[ua.AttributeIds, tuple[object, object]] = {}
    for attribute, stored in node.attributes.items():
        assert stored.value is not None and stored.value.Value is not None
        out[attribute] = (stored.value.Value.Value, stored.value.Value.VariantType)
    return out


def references_of(node: NodeData) -> list[tuple[object, ...]]:
    return [
        (
            r.ReferenceTypeId,
            r.IsForward,
            r.NodeId,
            r.BrowseName,
            r.DisplayName,
            int(r.NodeClass),
            r.TypeDefinition,
        )
        for r in node.references
    ]


async def build_line(space: AddressSpace) -> None:
    """Types, a machine with process values, an order, a quality station."""
    await space.build_types()
    machines = await space.add_folder(
        "L1.Machines", "Machines", numeric(ObjectIds.ObjectsFolder), "The line's machines"
    )
    await space.add_instance("L1.M1", "Filler", MACHINE_TYPE, machines, description="M1")
    await space.add_variables(
        "L1.M1.ProcessValues",
        [
            Var("speed", ua.VariantType.Double, "Line speed", "1/min", range=(0.0, 600.0)),
            Var("level", ua.VariantType.Double, "Tank level", range=(0.0, 1.0)),
            Var("running", ua.VariantType.Boolean, ""),
        ],
    )
    await space.add_instance("L1.Orders.WO-1", "WO-1", ORDER_TYPE, machines)
    await space.add_instance("L1.QualityStations.Q1", "Q1", QUALITY_STATION_TYPE, machines)
    await space.add_object(
        "L1.Diagnostics",
        "Diagnostics",
        numeric(ObjectIds.ObjectsFolder),
        "Health of the edge",
        event_notifier=True,
        variables=[Var("OutboxDepth", ua.VariantType.Int64, "Events waiting", "events")],
    )


async def test_the_bulk_loader_stores_what_the_add_nodes_service_stores() -> None:
    bulk_server, idx = await new_server()
    service_server, service_idx = await new_server()
    assert idx == service_idx
    loader = RecordingLoader(bulk_server)
    await build_line(AddressSpace(bulk_server, idx, loader, types_idx=idx + 1))

    session = service_server.iserver.isession
    for nodes, references in loader.batches:
        for result in await session.add_nodes([add_nodes_item(n) for n in nodes]):
            assert result.StatusCode.is_good(), result.StatusCode
        for status in await session.add_references([add_references_item(r) for r in references]):
            assert status.is_good(), status

    bulk = bulk_server.iserver.aspace
    service = service_server.iserver.aspace
    every = list(bulk.keys())  # asyncua's AddressSpace has keys() but no __iter__
    ours = [node_id for node_id in every if node_id.NamespaceIndex in (idx, idx + 1)]
    assert len(ours) > 150  # the types, a machine, an order, a station, diagnostics
    assert any(node_id.NamespaceIndex == idx + 1 for node_id in ours)  # the types
    assert sorted(every, key=str) == sorted(service.keys(), key=str)
    for node_id in ours:
        assert attributes_of(bulk[node_id]) == attributes_of(service[node_id]), node_id
    # the standard nodes' references too (BaseObjectType -> our types, Objects -> ours)
    for node_id in every:
        assert references_of(bulk[node_id]) == references_of(service[node_id]), node_id


async def test_values_written_after_the_load_reach_one_node_only() -> None:
    """DataValues are shared between nodes; a write must replace, not mutate."""
    server, idx = await new_server()
    space = AddressSpace(server, idx)
    await build_line(space)
    await space.add_instance("L1.M2", "Capper", MACHINE_TYPE, numeric(ObjectIds.ObjectsFolder))
    m1, m2 = space.handle("L1.M1.State"), space.handle("L1.M2.State")
    await server.write_attribute_value(m1.node_id, ua.DataValue(ua.Variant("running")))
    assert (await server.get_node(m1.node_id).read_value()) == "running"
    assert (await server.get_node(m2.node_id).read_value()) == ""
    await server.get_node(m1.node_id).write_attribute(
        ua.AttributeIds.Description,
        ua.DataValue(ua.Variant(ua.LocalizedText("renamed"), ua.VariantType.LocalizedText)),
    )
    description = await server.get_node(m2.node_id).read_description()
    assert description.Text.startswith("running, stopped or unknown")


@pytest.mark.parametrize(
    ("node_id", "parent", "message"),
    [
        ("L1.M1.State", "L1.M1", "a node with that NodeId exists"),
        ("L1.Extra", "L1.Nowhere", "its parent ns=2;s=L1.Nowhere does not exist"),
    ],
)
async def test_a_node_that_cannot_be_added_is_named(
    node_id: str, parent: str, message: str
) -> None:
    server, idx = await new_server()
    space = AddressSpace(server, idx)
    await build_line(space)
    spec = NodeSpec(
        node_id=ua.NodeId(node_id, idx),
        browse_name=ua.QualifiedName("X", idx),
        node_class=ua.NodeClass.Object,
        parent=ua.NodeId(parent, idx),
        reference_type=numeric(ObjectIds.HasComponent),
        type_definition=numeric(ObjectIds.BaseObjectType),
        display_name="X",
        attributes=(),
    )
    with pytest.raises(EdgeError, match=f"cannot add ns=2;s={node_id}: {message}"):
        NodeLoader(server.iserver.aspace).add([spec])

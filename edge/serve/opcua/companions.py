"""Companion specifications on the machine objects, so clients that know them
understand a machine without a template of ours.

Every machine (``<line>.<machine>``) carries, as OPC 40001-1 (Machinery) says:

- ``DI:Identification`` (MachineIdentificationType), by HasAddIn from the
  machine and from its ``Machinery:MachineryBuildingBlocks`` folder:
  Manufacturer, SerialNumber, ProductInstanceUri (mandatory), Model,
  YearOfConstruction (where the config gives them; see ``[[machines]]``);
- ``Machinery:MachineryItemState`` (MachineryItemState_StateMachineType) in
  MachineryBuildingBlocks: NotAvailable while the machine's state is unknown
  (no data, PLC link down), Executing while it runs, OutOfService while it stands
  in a planned stop (breaks excepted: a reason of category ``planned``),
  NotExecuting in any other stop;
- an Organizes reference from ``Machinery:Machines``, the entry point clients
  look for.

A machine whose plc_map delivers a PackML state word also carries
``PackML:BaseStateMachine`` (PackMLBaseStateMachineType, OPC 30050) with its
nested MachineState and ExecuteState machines: each CurrentState (and its Id,
the state object in the type) follows the PLC's state code; a nested machine
that is not active (MachineState while Aborted) has no current state: an empty
CurrentState and a null Id, Good.

The same members are InstanceDeclarations of MachineType (the PackML state
machine Optional), so the type describes its instances.
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncua import ua
from asyncua.server.address_space import AddressSpace as NodeStore

from edge.errors import EdgeError
from edge.serve.opcua.address_space import AddressSpace
from edge.serve.opcua.bulk import ReferenceSpec
from edge.serve.opcua.instances import OPTIONAL
from edge.serve.opcua.model import MACHINE_TYPE, type_node_id
from edge.serve.opcua.nodesets import DI_URI, MACHINERY_URI, PACKML_URI
from edge.serve.opcua.uaids import ObjectIds, numeric, numeric_in

# Machinery (OPC 40001-1) and PackML (OPC 30050) NodeIds, in their nodesets' namespaces
_MACHINES_FOLDER = 1001
_MACHINE_IDENTIFICATION_TYPE = 1012
_MACHINERY_ITEM_STATE_TYPE = 1002
_PACKML_BASE_STATE_MACHINE_TYPE = 3
_PACKML_MACHINE_STATE_MACHINE_TYPE = 2
_PACKML_EXECUTE_STATE_MACHINE_TYPE = 1

IDENTIFICATION = "Identification"
BUILDING_BLOCKS = "MachineryBuildingBlocks"
ITEM_STATE = f"{BUILDING_BLOCKS}.MachineryItemState"
PACKML = "BaseStateMachine"
PACKML_MACHINE = f"{PACKML}.MachineState"
PACKML_EXECUTE = f"{PACKML_MACHINE}.ExecuteState"
_OPTIONAL_IDENTIFICATION = ("Model", "YearOfConstruction")

_HAS_ADD_IN = numeric(ObjectIds.HasAddIn)
_ORGANIZES = numeric(ObjectIds.Organizes)
_STATE_TYPES = frozenset(numeric(i) for i in (ObjectIds.StateType, ObjectIds.InitialStateType))

# PackML state word (PackTags StateCurrent) -> (BaseStateMachine, MachineState, ExecuteState)
_PACKML_PATHS: dict[str, tuple[str, str | None, str | None]] = {
    "Aborting": ("Aborting", None, None),
    "Aborted": ("Aborted", None, None),
    "Clearing": ("Cleared", "Clearing", None),
    "Stopping": ("Cleared", "Stopping", None),
    "Stopped": ("Cleared", "Stopped", None),
    **{
        name: ("Cleared", "Running", name)
        for name in (
            "Resetting",
            "Idle",
            "Starting",
            "Execute",
            "Completing",
            "Complete",
            "Holding",
            "Held",
            "Unholding",
            "Suspending",
            "Suspended",
            "Unsuspending",
        )
    },
}


@dataclass(frozen=True, slots=True)
class Identification:
    """What the config says about a machine's make (empty: not configured)."""

    manufacturer: str = ""
    model: str = ""
    serial_number: str = ""
    product_instance_uri: str = ""
    year_of_construction: int | None = None


def _state_ids(nodes: NodeStore, type_id: ua.NodeId) -> dict[str, ua.NodeId]:
    """State name -> the state object's NodeId, from a state machine type's components."""
    data = nodes.get(type_id)
    if data is None:
        raise EdgeError(f"OPC UA: state machine type {type_id.to_string()} is not loaded")
    return {
        str(ref.BrowseName.Name): ref.NodeId
        for ref in data.references
        if ref.IsForward and ref.TypeDefinition in _STATE_TYPES
    }


class Companions:
    """The companion types of one server, found in its node store."""

    def __init__(self, space: AddressSpace, namespaces: dict[str, int]) -> None:
        self._space = space
        machinery, di = namespaces[MACHINERY_URI], namespaces[DI_URI]
        packml = namespaces[PACKML_URI]
        self._machinery = machinery
        self._di = di
        self._packml = packml
        self.machines_folder = numeric_in(_MACHINES_FOLDER, machinery)
        self.identification_type = numeric_in(_MACHINE_IDENTIFICATION_TYPE, machinery)
        self.item_state_type = numeric_in(_MACHINERY_ITEM_STATE_TYPE, machinery)
        self.packml_type = numeric_in(_PACKML_BASE_STATE_MACHINE_TYPE, packml)
        nodes = space.server.iserver.aspace
        self.item_states = _state_ids(nodes, self.item_state_type)
        self.packml_states = (
            _state_ids(nodes, self.packml_type),
            _state_ids(nodes, numeric_in(_PACKML_MACHINE_STATE_MACHINE_TYPE, packml)),
            _state_ids(nodes, numeric_in(_PACKML_EXECUTE_STATE_MACHINE_TYPE, packml)),
        )

    def _names(self) -> tuple[ua.QualifiedName, ua.QualifiedName, ua.QualifiedName]:
        return (
            ua.QualifiedName(IDENTIFICATION, self._di),
            ua.QualifiedName(BUILDING_BLOCKS, self._machinery),
            ua.QualifiedName("MachineryItemState", self._machinery),
        )

    async def declare_on_machine_type(self) -> None:
        """MachineType's InstanceDeclarations of the companion members."""
        space = self._space
        identification, blocks, state = self._names()
        await space.declare(
            MACHINE_TYPE,
            self.identification_type,
            identification,
            reference=ObjectIds.HasAddIn,
            optional=_OPTIONAL_IDENTIFICATION,
        )
        await space.declare(MACHINE_TYPE, numeric(ObjectIds.FolderType), blocks)
        await space.declare(
            MACHINE_TYPE,
            self.item_state_type,
            state,
            reference=ObjectIds.HasAddIn,
            under=BUILDING_BLOCKS,
        )
        await space.add_references(
            [
                ReferenceSpec(
                    space.type_node(type_node_id(MACHINE_TYPE, BUILDING_BLOCKS)),
                    _HAS_ADD_IN,
                    space.type_node(type_node_id(MACHINE_TYPE, IDENTIFICATION)),
                )
            ]
        )
        await space.declare(
            MACHINE_TYPE,
            self.packml_type,
            ua.QualifiedName(PACKML, self._packml),
            rule=OPTIONAL,
        )

    async def add_to_machine(self, machine_text: str, machine: ua.NodeId, *, packml: bool) -> None:
        """The companion members of one machine object (values: :class:`MachineView
        <edge.serve.opcua.machines.MachineView>` stages them)."""
        space = self._space
        identification, blocks, state = self._names()
        ident = await space.add_declared(
            f"{machine_text}.{IDENTIFICATION}",
            identification,
            machine,
            self.identification_type,
            optional=_OPTIONAL_IDENTIFICATION,
            reference=ObjectIds.HasAddIn,
        )
        folder = await space.add_declared(
            f"{machine_text}.{BUILDING_BLOCKS}", blocks, machine, numeric(ObjectIds.FolderType)
        )
        await space.add_declared(
            f"{machine_text}.{ITEM_STATE}",
            state,
            folder,
            self.item_state_type,
            reference=ObjectIds.HasAddIn,
            extra=(
                ReferenceSpec(folder, _HAS_ADD_IN, ident),
                ReferenceSpec(self.machines_folder, _ORGANIZES, machine),
            ),
        )
        if packml:
            await space.add_declared(
                f"{machine_text}.{PACKML}",
                ua.QualifiedName(PACKML, self._packml),
                machine,
                self.packml_type,
            )

    def available_states(self) -> dict[str, list[ua.NodeId]]:
        """Each PackML state machine's AvailableStates value (its states' NodeIds)."""
        base, machine, execute = self.packml_states
        return {
            f"{PACKML}.AvailableStates": list(base.values()),
            f"{PACKML_MACHINE}.AvailableStates": list(machine.values()),
            f"{PACKML_EXECUTE}.AvailableStates": list(execute.values()),
        }

    def packml_values(self, state_name: str) -> list[tuple[str, ua.LocalizedText, ua.NodeId]]:
        """``(<machine>.<path>.CurrentState relative path, text, Id)`` of the three
        PackML state machines for a PLC state name; not active (or an unknown
        name): an empty text and a null NodeId."""
        paths = _PACKML_PATHS.get(state_name, (None, None, None))
        out: list[tuple[str, ua.LocalizedText, ua.NodeId]] = []
        for prefix, name, states in zip(
            (PACKML, PACKML_MACHINE, PACKML_EXECUTE), paths, self.packml_states, strict=True
        ):
            state_id = states.get(name) if name is not None else None
            if state_id is None:
                out.append((f"{prefix}.CurrentState", ua.LocalizedText(""), ua.NodeId()))
            else:
                out.append((f"{prefix}.CurrentState", ua.LocalizedText(name), state_id))
        return out

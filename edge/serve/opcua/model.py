"""What the line's address space declares: object types, their members, and NodeIds.

One declaration table drives both the ObjectTypes (MachineType, OeeWindowType,
OrderType, QualityStationType) and every instance of them, so an instance's
children always match its type's InstanceDeclarations (same BrowseNames, data
types, units, descriptions).

NodeIds are strings derived from config ids and browse names, never from
creation order, so SCADA tags survive restarts and reordered configs. Instances
are in the line's namespace, the types in the one :data:`TYPES_NAMESPACE` of
every edge::

    ns=<index of the line's namespace URI>;s=L1.M1.OEE.Availability
    ns=<...>;s=L1.Orders.WO-1001.Progress
    ns=<index of TYPES_NAMESPACE>;s=MachineType.OEE.Availability
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncua import ua

Vt = ua.VariantType

# One namespace for the ObjectTypes of every edge: a SCADA template made for one
# line's MachineType matches every line's. Instances live in the line's namespace.
TYPES_NAMESPACE = "urn:edge-line-controller:types"

RATIO = "1"  # the unit of a ratio (UNECE "C62", one)
UNIT_RANGE = (0.0, 1.0)


@dataclass(frozen=True, slots=True)
class Var:
    """A variable: its BrowseName, type, unit (config/plc_map text) and description."""

    name: str
    vtype: ua.VariantType
    description: str
    unit: str = ""
    array: bool = False
    range: tuple[float, float] | None = None  # EURange: the values of normal operation


@dataclass(frozen=True, slots=True)
class Obj:
    """A child object; ``type_name`` is one of this model's ObjectTypes (None: a folder)."""

    name: str
    description: str
    type_name: str | None = None


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    description: str


Member = Var | Obj | Method

OEE_WINDOW_TYPE = "OeeWindowType"
MACHINE_TYPE = "MachineType"
ORDER_TYPE = "OrderType"
QUALITY_STATION_TYPE = "QualityStationType"
ORDER_COUNTS_TYPE = "OrderCountsType"
SPC_TYPE = "SpcType"

# KPIs of one window (OEE.md §6): the current shift, the last closed shift.
OEE_WINDOW_MEMBERS: tuple[Member, ...] = (
    Var("Name", Vt.String, "Shift name of the window"),
    Var("Start", Vt.DateTime, "Start of the window (UTC)"),
    Var("End", Vt.DateTime, "End of the window, or event time so far while it is open"),
    Var("Closed", Vt.Boolean, "The window has ended"),
    Var("ScheduledTime", Vt.Double, "Window time inside shift time", "s"),
    Var("PlannedStopTime", Vt.Double, "Breaks and planned-reason stop time", "s"),
    Var("PlannedProductionTime", Vt.Double, "Scheduled minus planned stop time (PPT)", "s"),
    Var("RunTime", Vt.Double, "PPT minus downtime", "s"),
    Var("Downtime", Vt.Double, "Unplanned stop time inside PPT, comm_loss included", "s"),
    Var("DowntimeEvents", Vt.UInt32, "Stops at least micro_stop_s long overlapping PPT"),
    Var("MicroStops", Vt.UInt32, "Stops shorter than micro_stop_s inside PPT"),
    Var("MicroStopTime", Vt.Double, "Time of micro-stops inside PPT", "s"),
    Var("TotalCount", Vt.Int64, "Pieces made inside PPT", "pcs"),
    Var("GoodCount", Vt.Int64, "Good pieces inside PPT", "pcs"),
    Var("RejectCount", Vt.Int64, "Rejected pieces inside PPT", "pcs"),
    Var(
        "Availability",
        Vt.Double,
        "RunTime / PlannedProductionTime; NaN while PPT is 0",
        RATIO,
        range=UNIT_RANGE,
    ),
    Var(
        "Performance",
        Vt.Double,
        "Ideal cycle time x pieces / RunTime; not capped at 1; NaN while RunTime is 0",
        RATIO,
        range=UNIT_RANGE,
    ),
    Var(
        "Quality",
        Vt.Double,
        "GoodCount / TotalCount; NaN while nothing was made",
        RATIO,
        range=UNIT_RANGE,
    ),
    Var("OEE", Vt.Double, "Availability x Performance x Quality", RATIO, range=UNIT_RANGE),
    Var("TEEP", Vt.Double, "OEE x PPT / window length", RATIO, range=UNIT_RANGE),
    Var(
        "MTBF",
        Vt.Double,
        "RunTime / DowntimeEvents (mean time between failures); NaN without one",
        "s",
    ),
    Var(
        "MTTR",
        Vt.Double,
        "Downtime-event time / DowntimeEvents (mean time to repair); NaN without one",
        "s",
    ),
)

ORDER_COUNTS_MEMBERS: tuple[Member, ...] = (
    Var("OrderId", Vt.String, "The order made on this machine now; empty when none"),
    Var("TotalCount", Vt.Int64, "Pieces this machine made for the order", "pcs"),
    Var("GoodCount", Vt.Int64, "Good pieces this machine made for the order", "pcs"),
    Var("RejectCount", Vt.Int64, "Rejected pieces this machine made for the order", "pcs"),
)

MACHINE_MEMBERS: tuple[Member, ...] = (
    Var("Name", Vt.String, "The machine's name from the line config"),
    Var("State", Vt.String, "running, stopped or unknown (no valid data, PLC link down)"),
    Var("PackMLState", Vt.String, "PackML state name where the machine maps one, else empty"),
    Var("StateSince", Vt.DateTime, "When the current state began (event time, UTC)"),
    Var("StopReason", Vt.String, "Reason of the current stop; empty while running"),
    Var("StopId", Vt.UInt32, "Id of the current stop (for SetStopReason); 0 while none"),
    Var("CurrentOrder", Vt.String, "The order made on this machine now; empty when none"),
    Var("PlcLinkUp", Vt.Boolean, "The link to the machine's PLC is up"),
    Var("EventTime", Vt.DateTime, "Event time of the latest data from the machine (UTC)"),
    Obj("OEE", "The current shift's KPIs and counts (OEE.md §6)", OEE_WINDOW_TYPE),
    Obj("LastShift", "The last closed shift's KPIs and counts", OEE_WINDOW_TYPE),
    Obj("Order", "Counts for the order made now", ORDER_COUNTS_TYPE),
    Obj("ProcessValues", "The process values of the machine's plc_map"),
    Method("SetStopReason", "Name the reason of a stop, the current one or a past one"),
)

ORDER_MEMBERS: tuple[Member, ...] = (
    Var("OrderId", Vt.String, "The work order's id"),
    Var("Status", Vt.String, "created, released, running, held, completed or aborted"),
    Var("Product", Vt.String, "Product or part number"),
    Var("TargetQuantity", Vt.Int64, "Good pieces to make", "pcs"),
    Var("GoodCount", Vt.Int64, "Good pieces made so far", "pcs"),
    Var("RejectCount", Vt.Int64, "Rejected pieces so far", "pcs"),
    Var("Progress", Vt.Double, "GoodCount / TargetQuantity", "%", range=(0.0, 100.0)),
    Var("IdealCycleTime", Vt.Double, "Ideal cycle time of the order; 0: each machine's own", "s"),
    Var("Machines", Vt.String, "Machines the order runs on", array=True),
)

SPC_MEMBERS: tuple[Member, ...] = (
    Var("Characteristic", Vt.String, "The measured characteristic of the latest SPC update"),
    Var("Mean", Vt.Double, "Process mean"),
    Var("StdDev", Vt.Double, "Process standard deviation (within subgroups)"),
    Var("Cp", Vt.Double, "Process capability"),
    Var("Cpk", Vt.Double, "Process capability index"),
    Var("LastViolation", Vt.String, "The latest control-chart rule violated; empty when none"),
)

QUALITY_STATION_MEMBERS: tuple[Member, ...] = (
    Var("Name", Vt.String, "The station's name from the line config"),
    Var("LastResult", Vt.String, "pass or fail, with the disposition of a failed piece"),
    Var("LastResultTime", Vt.DateTime, "When the last result was recorded (UTC)"),
    Var("InspectedCount", Vt.Int64, "Pieces inspected", "pcs"),
    Var("PassCount", Vt.Int64, "Pieces that passed", "pcs"),
    Var("FailCount", Vt.Int64, "Pieces that failed", "pcs"),
    Obj("Spc", "Statistical process control of the station's measurements", SPC_TYPE),
)

OBJECT_TYPES: dict[str, tuple[str, tuple[Member, ...]]] = {
    OEE_WINDOW_TYPE: ("KPIs and counts of one window: a shift or an order", OEE_WINDOW_MEMBERS),
    ORDER_COUNTS_TYPE: ("A machine's counts for the order it makes now", ORDER_COUNTS_MEMBERS),
    SPC_TYPE: ("SPC figures of a quality station", SPC_MEMBERS),
    MACHINE_TYPE: (
        "A machine of the line: state, stops, counts, OEE, process values",
        MACHINE_MEMBERS,
    ),
    ORDER_TYPE: ("A work order on the line", ORDER_MEMBERS),
    QUALITY_STATION_TYPE: (
        "A quality station: inspection results and SPC",
        QUALITY_STATION_MEMBERS,
    ),
}

# Line-level objects whose NodeIds sit beside the machines' (L1.<name>): a machine
# id equal to one of these would collide.
RESERVED_IDS = frozenset(
    {"Machines", "Orders", "QualityStations", "Shift", "Diagnostics", "AcknowledgeAlarm", "Name"}
)


def type_node_id(type_name: str, *path: str) -> str:
    """A type's NodeId string, in the types namespace (``MachineType.OEE.Availability``)."""
    return ".".join((type_name, *path))


def machine_node_id(line_id: str, machine_id: str, *path: str) -> str:
    return ".".join((line_id, machine_id, *path))


def order_node_id(line_id: str, order_id: str, *path: str) -> str:
    return ".".join((line_id, "Orders", order_id, *path))


def station_node_id(line_id: str, station_id: str, *path: str) -> str:
    return ".".join((line_id, "QualityStations", station_id, *path))

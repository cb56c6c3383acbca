"""What a SCADA engineer checks, with an independent client (node-opcua, ``node/scada.js``):

- security: with the None endpoint offered too, an untrusted client certificate is
  refused on Basic256Sha256 SignAndEncrypt (BadCertificateUntrusted) and lands in
  ``rejected/``; moved to ``trusted/`` it is trusted, without a restart;
- what a login may do (UserExecutable per role), the words of a refused call
  (DiagnosticInfos with the StringTable), analog items with EURange, the types'
  fixed namespace, Machinery identification and state;
- Alarms & Conditions: a fault of the simulated PLC raises an alarm the client's
  alarm list shows (ConditionRefresh), the client acknowledges it, and a client
  connecting afterwards finds it in its list.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from actors.machine import GetStatus, SampleBatch
from actors.messages import Sample
from edge import opcua_server
from edge.config import SimulatorConfig
from edge.opcua_server.model import TYPES_NAMESPACE
from edge.orders import component as orders_component
from edge.service import LineService
from edge.simulator import SimulatedLine, machine_specs
from tests.integration.line.test_line_service import _sim_fields

from .conftest import NAMESPACE, USERS, endpoint, free_port, make_config, wait_for
from .nodejs import ensure_installed, run

pytestmark = pytest.mark.integration


def _der(path: Path) -> bytes:
    data = path.read_bytes()
    cert = (
        x509.load_pem_x509_certificate(data)
        if data.lstrip().startswith(b"-----BEGIN")
        else x509.load_der_x509_certificate(data)
    )
    return cert.public_bytes(serialization.Encoding.DER)


async def test_untrusted_on_sign_and_encrypt_then_trusted_without_a_restart(
    tmp_path: Path,
) -> None:
    ensure_installed(tmp_path)
    port = free_port()
    config = make_config(tmp_path, port, opcua=USERS)  # the None endpoint is offered too
    assert config.opcua.security_none
    pki = config.storage.state_dir / "opcua-pki"
    client_pki, log = tmp_path / "node-pki", tmp_path / "node.log"
    async with LineService(config, components=[opcua_server.component]):
        first = await run(
            "scada.js", "secure", endpoint(port), str(client_pki), "lead", "lead-pw", log=log
        )
        assert first == {"ok": False, "status": "BadCertificateUntrusted"}
        # the refused certificate waits in rejected/, and it is the client's own
        own = client_pki / "own" / "certs" / "client_certificate.pem"
        rejected = list((pki / "rejected").iterdir())
        assert [_der(p) for p in rejected] == [_der(own)]
        # the administrator trusts it by moving it: no restart
        shutil.move(rejected[0], pki / "trusted" / rejected[0].name)
        second = await run(
            "scada.js", "secure", endpoint(port), str(client_pki), "lead", "lead-pw", log=log
        )
        assert second == {"ok": True, "name": "Filler"}
        assert list((pki / "rejected").iterdir()) == []


async def test_what_a_scada_engineer_reads(tmp_path: Path) -> None:
    ensure_installed(tmp_path)
    port = free_port()
    config = make_config(tmp_path, port, opcua=USERS)
    components = [orders_component, opcua_server.component]
    async with LineService(config, components=components, tick_interval_s=None) as service:
        ref = service.machine_ref("M1")
        await ref.tell(SampleBatch((Sample("M1", "running", True, time.time() - 60),)))
        await ref.ask(GetStatus(time.time()))
        seen = await run(
            "scada.js",
            "inspect",
            endpoint(port),
            str(tmp_path / "node-pki"),
            NAMESPACE,
            TYPES_NAMESPACE,
            log=tmp_path / "node.log",
        )
    # UserExecutable per login: anonymous calls nothing; an operator starts orders
    # but does not complete them (supervisor and above do); everyone with a role acks
    assert seen["userExecutable"] == {
        "anonymous": {
            "L1.Orders.StartOrder": False,
            "L1.Orders.CompleteOrder": False,
            "L1.M1.SetStopReason": False,
            "Acknowledge": False,
        },
        "op": {
            "L1.Orders.StartOrder": True,
            "L1.Orders.CompleteOrder": False,
            "L1.M1.SetStopReason": True,
            "Acknowledge": True,
        },
        "lead": {
            "L1.Orders.StartOrder": True,
            "L1.Orders.CompleteOrder": True,
            "L1.M1.SetStopReason": True,
            "Acknowledge": True,
        },
    }
    # the words of refused calls, from the response's StringTable
    assert seen["calls"] == [
        {
            "status": "BadUserAccessDenied",
            "symbol": "BadUserAccessDenied",
            "text": "CompleteOrder: user 'op' (roles operator) may not call it; "
            "allowed roles: admin, supervisor",
        },
        {
            "status": "BadInvalidState",
            "symbol": "BadInvalidState",
            "text": "StartOrder: order_id 'WO-404': no such order",
        },
    ]
    # Part 8 analog items: AnalogUnitType with EURange and UNECE units
    analog = seen["analog"]
    assert analog["L1.M1.OEE.Availability"] == {
        "typeDefinition": ["ns=0;i=17497"],
        "EURange": {"low": 0, "high": 1},
        "EngineeringUnits": {"unitId": 0x433632, "displayName": "1"},  # "C62", one
    }
    assert analog["L1.M1.ProcessValues.temperature"]["EURange"] == {"low": -40, "high": 250}
    assert analog["L1.M1.ProcessValues.temperature"]["EngineeringUnits"]["unitId"] == 0x43454C
    assert analog["L1.M1.OEE.RunTime"]["EURange"] == "BadNodeIdUnknown"  # no range for a time
    # MachineType in the fixed types namespace; its members' BrowseNames there too
    types = seen["namespaces"]["types"]
    assert seen["machineType"] == [f"ns={types};s=MachineType"]
    assert f"{types}:OEE" in seen["memberNames"] and f"{types}:State" in seen["memberNames"]
    # Machinery identification and state
    machinery = seen["machinery"]
    assert machinery["manufacturer"] == "Acme Filling GmbH"
    assert machinery["serialNumber"] == "AF4-2019-0042"
    assert machinery["model"] == "AF-400"
    assert machinery["state"] == "Executing"
    assert machinery["machines"] == ["M1", "M2"]


async def test_a_simulated_fault_in_the_alarm_list_acknowledged_and_refreshed(
    tmp_path: Path, free_port_factory: object
) -> None:
    ensure_installed(tmp_path)
    opc_port, sim_port = free_port(), free_port()
    config = make_config(tmp_path, opc_port, sim_port=sim_port, opcua=USERS)
    # faults only (no micro-stops), one per running second on average; a fault lasts
    # 180..1200 s of simulated time (real time here), longer than this test
    sim_config = SimulatorConfig(
        **{
            **_sim_fields(config.simulator),
            "enabled": True,
            "port": sim_port,
            "time_scale": 1.0,
            "micro_stops_per_hour": 0.0,
            "faults_per_hour": 3600.0,
        }
    )
    components = [orders_component, opcua_server.component]
    sim = SimulatedLine(sim_config, machine_specs(config))
    async with sim, LineService(config, components=components):

        def faulted() -> bool:
            return any(e.fault_code != 0 for e in sim.events("M1"))

        await wait_for(faulted, 30)
        code = next(e.fault_code for e in sim.events("M1") if e.fault_code != 0)
        seen = await run(
            "scada.js",
            "alarms",
            endpoint(opc_port),
            str(tmp_path / "node-pki"),
            "op",
            "op-pw",
            "30",
            log=tmp_path / "node.log",
        )
    fault = "ns=2;s=L1.M1.FaultAlarm"
    # the simulator's own fault code, named from M1's reason table where it has one
    reason = {17: "jam at infeed"}.get(code)
    message = f"M1 fault {code}: {reason}" if reason else f"M1 fault {code}"
    assert seen["raised"] == {
        "conditionId": fault,
        "message": message,
        "severity": 700,
        "active": True,
        "acked": False,
        "retain": True,
        "comment": "",
        "user": "",
    }
    assert seen["acknowledge"] == "Good"
    assert seen["acknowledged"]["acked"] is True
    assert seen["acknowledged"]["comment"] == "on my way"
    assert seen["acknowledged"]["user"] == "op"
    # a client connecting afterwards: its ConditionRefresh lists the retained alarm
    listed = {a["conditionId"]: a for a in seen["refreshed"]}
    assert listed[fault] == seen["acknowledged"]
    # the links never went down: no PLC-link alarm in the list
    assert not [c for c in listed if c.endswith("PlcLinkAlarm")]

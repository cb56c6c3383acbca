// A SCADA engineer's checks with an independent OPC UA client (node-opcua), one
// mode per run; each prints one "RESULT <json>" line.
//
// Usage: node scada.js MODE ENDPOINT PKI_DIR [ARGS...]
//   secure  USER PASSWORD           Basic256Sha256 SignAndEncrypt session, read a value
//   inspect LINE_NS TYPES_NS        UserExecutable per login, method diagnostics, analog
//                                   items, type namespace, Machinery identification/state
//   alarms  USER PASSWORD SECONDS   the live alarm list (ConditionRefresh): wait for the
//                                   active FaultAlarm of L1.M1, acknowledge it, and list
//                                   the alarms again from a second session
//
// Protocol: the only lines on stdout are "RESULT <json>"; node-opcua's own messages go
// to stderr, and its PKI (client certificate and key) lives in PKI_DIR, never in $HOME.
"use strict";
const path = require("path");
const util = require("util");

for (const name of ["log", "info", "warn", "debug", "error"]) {
  console[name] = (...args) => process.stderr.write(util.format(...args) + "\n");
}
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const {
  OPCUAClient,
  AttributeIds,
  MessageSecurityMode,
  SecurityPolicy,
  DataType,
  UserTokenType,
  installAlarmMonitoring,
  uninstallAlarmMonitoring,
} = require("node-opcua-client");

const [mode, endpoint, pkiDir, ...args] = process.argv.slice(2);

function makeClient(secure) {
  const clientCertificateManager = new OPCUACertificateManager({
    rootFolder: pkiDir,
    automaticallyAcceptUnknownCertificate: true,
  });
  return OPCUAClient.create({
    applicationName: "scada-check",
    clientCertificateManager,
    certificateFile: path.join(pkiDir, "own", "certs", "client_certificate.pem"),
    privateKeyFile: path.join(pkiDir, "own", "private", "private_key.pem"),
    endpointMustExist: false,
    securityMode: secure ? MessageSecurityMode.SignAndEncrypt : MessageSecurityMode.None,
    securityPolicy: secure ? SecurityPolicy.Basic256Sha256 : SecurityPolicy.None,
    connectionStrategy: { maxRetry: 1, initialDelay: 200, maxDelay: 500 },
  });
}

function login(user, password) {
  return user ? { type: UserTokenType.UserName, userName: user, password } : undefined;
}

async function withSession(secure, user, password, body) {
  const client = makeClient(secure);
  await client.connect(endpoint);
  try {
    const session = await client.createSession(login(user, password));
    try {
      return await body(session);
    } finally {
      await session.close();
    }
  } finally {
    await client.disconnect();
  }
}

function text(value) {
  return value && typeof value === "object" && "text" in value ? value.text : value;
}

async function secure() {
  const [user, password] = args;
  try {
    const name = await withSession(true, user, password, async (session) => {
      const namespaces = await session.readNamespaceArray();
      const ns = namespaces.indexOf("urn:T:a:L1");
      const dv = await session.read({ nodeId: `ns=${ns};s=L1.M1.Name`, attributeId: AttributeIds.Value });
      return dv.value.value;
    });
    return { ok: true, name };
  } catch (err) {
    const match = String(err.message).match(/Bad[A-Za-z]+/);
    return { ok: false, status: match ? match[0] : String(err.message) };
  }
}

async function inspect() {
  const [lineNs, typesNs] = args;
  const out = {};
  const logins = { anonymous: [], op: ["op", "op-pw"], lead: ["lead", "lead-pw"] };
  out.userExecutable = {};
  for (const [who, [user, password]] of Object.entries(logins).map(([k, v]) => [k, v.length ? v : [undefined, undefined]])) {
    out.userExecutable[who] = await withSession(false, user, password, async (session) => {
      const ns = (await session.readNamespaceArray()).indexOf(lineNs);
      const seen = {};
      for (const method of ["L1.Orders.StartOrder", "L1.Orders.CompleteOrder", "L1.M1.SetStopReason"]) {
        const dv = await session.read({ nodeId: `ns=${ns};s=${method}`, attributeId: AttributeIds.UserExecutable });
        seen[method] = dv.value.value;
      }
      const ack = await session.read({ nodeId: "i=9111", attributeId: AttributeIds.UserExecutable });
      seen.Acknowledge = ack.value.value;
      return seen;
    });
  }
  await withSession(false, "op", "op-pw", async (session) => {
    const namespaces = await session.readNamespaceArray();
    const ns = namespaces.indexOf(lineNs);
    const tns = namespaces.indexOf(typesNs);
    const id = (t) => `ns=${ns};s=${t}`;
    out.namespaces = { line: ns, types: tns };
    // a refused call, with the words asked for (operation-level diagnostics)
    const { results, diagnosticStrings } = await session.callWithDiagnostics(
      [
        {
          objectId: id("L1.Orders"),
          methodId: id("L1.Orders.CompleteOrder"),
          inputArguments: [{ dataType: DataType.String, value: "WO-404" }],
        },
        {
          objectId: id("L1.Orders"),
          methodId: id("L1.Orders.StartOrder"),
          inputArguments: [{ dataType: DataType.String, value: "WO-404" }],
        },
      ],
      0x20 | 0x40 | 0x80,
    );
    out.calls = results.map((r, i) => ({
      status: r.statusCode.name,
      text: diagnosticStrings[i] ? diagnosticStrings[i].localizedText : null,
      symbol: diagnosticStrings[i] ? diagnosticStrings[i].symbolicId : null,
    }));
    // analog items: type, range, units
    out.analog = {};
    for (const node of ["L1.M1.OEE.Availability", "L1.M1.ProcessValues.temperature", "L1.M1.OEE.RunTime"]) {
      const typeDef = await session.browse({ nodeId: id(node), referenceTypeId: "HasTypeDefinition", browseDirection: 0 });
      const props = {};
      for (const prop of ["EURange", "EngineeringUnits"]) {
        const dv = await session.read({ nodeId: id(`${node}.${prop}`), attributeId: AttributeIds.Value });
        const v = dv.value.value;
        props[prop] = dv.statusCode.name === "Good" && v
          ? (prop === "EURange" ? { low: v.low, high: v.high } : { unitId: v.unitId, displayName: text(v.displayName) })
          : dv.statusCode.name;
      }
      out.analog[node] = { typeDefinition: typeDef.references.map((r) => r.nodeId.toString()), ...props };
    }
    const m1Type = await session.browse({ nodeId: id("L1.M1"), referenceTypeId: "HasTypeDefinition", browseDirection: 0 });
    out.machineType = m1Type.references.map((r) => r.nodeId.toString());
    const member = await session.browse({ nodeId: id("L1.M1"), browseDirection: 0, referenceTypeId: "HierarchicalReferences", includeSubtypes: true });
    out.memberNames = member.references.map((r) => `${r.browseName.namespaceIndex}:${r.browseName.name}`).sort();
    // Machinery (OPC 40001-1)
    const read = async (t) => {
      const dv = await session.read({ nodeId: id(t), attributeId: AttributeIds.Value });
      return text(dv.value.value);
    };
    out.machinery = {
      manufacturer: await read("L1.M1.Identification.Manufacturer"),
      serialNumber: await read("L1.M1.Identification.SerialNumber"),
      model: await read("L1.M1.Identification.Model"),
      state: await read("L1.M1.MachineryBuildingBlocks.MachineryItemState.CurrentState"),
      namespace: namespaces.indexOf("http://opcfoundation.org/UA/Machinery/"),
    };
    const machines = await session.browse({ nodeId: `ns=${out.machinery.namespace};i=1001`, browseDirection: 0, referenceTypeId: "Organizes" });
    out.machinery.machines = machines.references.map((r) => r.browseName.name).sort();
  });
  return out;
}

// An alarm's event field by its path ("activeState.id"): node-opcua nests them.
function field(alarm, name) {
  let v = alarm.fields;
  for (const part of name.split(".")) v = v ? v[part] : undefined;
  return v && "value" in v ? text(v.value) : null;
}

function alarmSummary(alarm) {
  return {
    conditionId: alarm.conditionId.toString(),
    message: field(alarm, "message"),
    severity: field(alarm, "severity"),
    active: field(alarm, "activeState.id"),
    acked: field(alarm, "ackedState.id"),
    retain: field(alarm, "retain"),
    comment: field(alarm, "comment"),
    user: field(alarm, "clientUserId"),
  };
}

function waitFor(check, seconds) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 1000 * seconds;
    const poll = () => {
      const found = check();
      if (found) return resolve(found);
      if (Date.now() > deadline) return reject(new Error("not within " + seconds + " s"));
      setTimeout(poll, 50);
    };
    poll();
  });
}

async function alarms() {
  const [user, password, seconds] = args;
  const out = {};
  await withSession(false, user, password, async (session) => {
    const ns = (await session.readNamespaceArray()).indexOf("urn:T:a:L1");
    const fault = `ns=${ns};s=L1.M1.FaultAlarm`;
    const list = await installAlarmMonitoring(session);
    const find = () => list.alarms().find((a) => a.conditionId.toString() === fault && field(a, "activeState.id") === true);
    const alarm = await waitFor(find, Number(seconds));
    out.raised = alarmSummary(alarm);
    const status = await alarm.acknowledge(session, "on my way");
    out.acknowledge = status.name;
    await waitFor(() => field(alarm, "ackedState.id") === true, Number(seconds));
    out.acknowledged = alarmSummary(alarm);
    await uninstallAlarmMonitoring(session);
  });
  // a SCADA client connecting now: the alarm list comes from ConditionRefresh
  await withSession(false, undefined, undefined, async (session) => {
    const list = await installAlarmMonitoring(session);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    out.refreshed = list.alarms().map(alarmSummary);
    await uninstallAlarmMonitoring(session);
  });
  return out;
}

async function main() {
  const modes = { secure, inspect, alarms };
  if (!modes[mode] || !pkiDir) throw new Error("usage: scada.js secure|inspect|alarms ENDPOINT PKI_DIR ...");
  const result = await modes[mode]();
  process.stdout.write("RESULT " + JSON.stringify(result) + "\n");
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});

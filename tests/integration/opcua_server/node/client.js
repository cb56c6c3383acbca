// An independent OPC UA client (node-opcua) for the edge's server: browses the
// line, reads a few values with their data types, subscribes to a counter and
// prints one JSON document with what it saw.
//
// Usage: node client.js ENDPOINT NAMESPACE_URI SECONDS PKI_DIR
//
// Protocol: the only lines on stdout are "SUBSCRIBED" and "RESULT <json>"; everything
// node-opcua says (first-run certificate creation, warnings) goes to stderr, and its
// PKI (client certificate and key) lives in PKI_DIR, never in the user's home.
"use strict";
const path = require("path");
const util = require("util");

// node-opcua logs through console.*; keep stdout for the protocol lines.
for (const name of ["log", "info", "warn", "debug", "error"]) {
  console[name] = (...args) => process.stderr.write(util.format(...args) + "\n");
}
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const {
  OPCUAClient,
  AttributeIds,
  TimestampsToReturn,
  MessageSecurityMode,
  SecurityPolicy,
  DataType,
} = require("node-opcua-client");

// node-opcua gives an Int64 as [high, low] 32-bit words.
function plain(value) {
  if (Array.isArray(value) && value.length === 2) return String(value[0] * 4294967296 + value[1]);
  if (typeof value === "bigint") return String(value);
  return value;
}

async function main() {
  const [endpoint, namespaceUri, seconds, pkiDir] = process.argv.slice(2);
  if (!pkiDir) throw new Error("usage: client.js ENDPOINT NAMESPACE_URI SECONDS PKI_DIR");
  const clientCertificateManager = new OPCUACertificateManager({
    rootFolder: pkiDir,
    automaticallyAcceptUnknownCertificate: true,
  });
  const client = OPCUAClient.create({
    clientCertificateManager,
    certificateFile: path.join(pkiDir, "own", "certs", "client_certificate.pem"),
    privateKeyFile: path.join(pkiDir, "own", "private", "private_key.pem"),
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 2, initialDelay: 200, maxDelay: 1000 },
  });
  const out = { browse: {}, reads: {}, changes: [] };
  await client.connect(endpoint);
  const session = await client.createSession();
  try {
    const namespaces = (await session.readNamespaceArray());
    const ns = namespaces.indexOf(namespaceUri);
    out.namespaceIndex = ns;
    const id = (text) => `ns=${ns};s=${text}`;
    for (const node of ["L1", "L1.Machines", `L1.M1`, `L1.M1.OEE`]) {
      const result = await session.browse(id(node));
      out.browse[node] = result.references.map((r) => r.browseName.name).sort();
    }
    const typeDef = await session.browse({
      nodeId: id("L1.M1"),
      referenceTypeId: "HasTypeDefinition",
      browseDirection: 0,
    });
    out.typeDefinition = typeDef.references.map((r) => r.nodeId.toString());
    for (const node of ["L1.M1.Name", "L1.M1.State", "L1.M1.OEE.TotalCount", "L1.M1.OEE.Availability"]) {
      const dv = await session.read({ nodeId: id(node), attributeId: AttributeIds.Value });
      out.reads[node] = {
        status: dv.statusCode.name,
        dataType: DataType[dv.value.dataType],
        value: plain(dv.value.value),
      };
    }
    const subscription = await session.createSubscription2({
      requestedPublishingInterval: 100,
      requestedMaxKeepAliveCount: 20,
      requestedLifetimeCount: 100,
      publishingEnabled: true,
    });
    const item = await subscription.monitor(
      { nodeId: id("L1.M1.OEE.TotalCount"), attributeId: AttributeIds.Value },
      { samplingInterval: 50, queueSize: 100, discardOldest: true },
      TimestampsToReturn.Both,
    );
    item.on("changed", (dv) => out.changes.push(String(plain(dv.value.value))));
    process.stdout.write("SUBSCRIBED\n");
    await new Promise((resolve) => setTimeout(resolve, 1000 * Number(seconds || 3)));
    await subscription.terminate();
  } finally {
    await session.close();
    await client.disconnect();
  }
  process.stdout.write("RESULT " + JSON.stringify(out) + "\n");
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});

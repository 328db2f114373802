// Package bootstrap is LwM2M client-initiated bootstrap
// (OMA-TS-LightweightM2M-Core 1.1 §5.2, 1.2 §6.1; Transport §6.1 for the
// CoAP mapping), both sides:
//
//   - Server: a coap.Handler for the bootstrap listener (5783 CoAP, 5784
//     CoAPS). On Bootstrap-Request (POST /bs?ep=&pct=) it answers 2.04, then
//     deletes the device's stale Security and Server instances, writes the
//     Security (0) and Server (1) instances of the operational account that
//     a Provision callback supplies, and sends Bootstrap-Finish.
//   - Client: the device side, a coap.Handler that applies Bootstrap-Write
//     and Bootstrap-Delete to an lwm2m/client Tree (keeping the
//     Bootstrap-Server account) and a Bootstrap method that sends the
//     request and waits for Bootstrap-Finish.
//
// It must not decide credentials or policy (the appliance's Provision
// callback does) and must not store anything.
package bootstrap

// Package lwm2m is the OMA Lightweight M2M protocol core: object paths, typed
// values, object models (built-in and loaded from OMA DDF XML), and the codecs
// for every content format LwM2M 1.0–1.2 uses.
//
// It imports no other FlowNexus package so that it can be published as a
// library; the CoAP transport, server and client engine live in its
// subpackages. Codecs cite OMA-TS-LightweightM2M-Core 1.2 (here "Core") and
// the RFCs they follow. Nothing here touches storage, HTTP or policy.
package lwm2m

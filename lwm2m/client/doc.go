// Package client is an LwM2M client engine (OMA-TS-LightweightM2M-Core 1.1
// and 1.2, client side): an object tree with model-checked Read, Write,
// Execute, Create, Delete and Discover, Write-Attributes and the
// notification rules they drive, Observe and Observe-Composite,
// Read/Write-Composite, Send, and the Registration interface with lifetime
// updates and queue mode. It runs on lwm2m/coap's endpoint over any
// coap.Transport (plain UDP here, DTLS from lwm2m/dtls).
//
// It owns device-side protocol behaviour only. It must not import other
// FlowNexus packages outside lwm2m, keep policy about what a device measures
// (that is simulation's), or start a goroutine per observation: timers carry
// the notification schedule so that thousands of clients fit in one process.
package client

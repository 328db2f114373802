// Package server is the LwM2M server (OMA-TS-LightweightM2M-Core 1.1/1.2
// §6, Transport §6) on top of lwm2m/coap: the Registration interface
// (register, update, de-register, expiry, NAT rebinding), device management
// requests as Go methods (read, discover, write, write-attributes, execute,
// create, delete, read- and write-composite), information reporting
// (observe, observe-composite, cancellation, Send on /dp) and queue mode.
//
// It owns protocol behaviour only. Policy — who may register, what to
// observe after a registration, where telemetry goes — belongs to the
// appliance, which implements Handler. The server must not touch the store,
// must not start goroutines per device, and must not block its CoAP read
// loop: Handler methods run on the endpoint's workers.
package server

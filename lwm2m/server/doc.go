// Package server is the LwM2M server (OMA-TS-LightweightM2M-Core 1.1/1.2
// §6, Transport §6) on top of lwm2m/coap: the Registration interface
// (register, update, de-register, expiry, NAT rebinding), device management
// requests as Go methods (read, discover, write, write-attributes, execute,
// create, delete, read- and write-composite), information reporting
// (observe, observe-composite, cancellation, Send on /dp) and queue mode.
//
// Wiring, as the appliance does it:
//
//	srv := server.New(server.DefaultConfig(), server.WithHandler(app), server.WithLogger(log), server.WithRegistry(models))
//	srv.Handle("/fw/", firmwareHandler)      // extra CoAP routes, Block2 done by lwm2m/coap
//	go srv.Serve(ctx, udp)                   // coap.ListenUDP(":5683")
//	go srv.Serve(ctx, dtlsServer)            // lwm2m/dtls, same registrations
//	recs, err := srv.Read(ctx, "urn:imei:…", lwm2m.MustParsePath("/3/0"), lwm2m.FormatSenMLCBOR)
//	if errors.Is(err, server.ErrNotFound) { … }   // 4.04 from the device; *ResponseError has the code
//
// Device requests take the endpoint name, wait for a queue-mode device to
// wake (until ctx ends) and fail with ErrNotRegistered, ErrTimeout or a
// *ResponseError wrapping ErrNotFound, ErrMethodNotAllowed ….
// A request belongs to the registration it was sent to: when that ends
// (new Register, De-register, expiry, eviction) it is cancelled, in flight
// or queued, with ErrRegistrationEnded; ForRegistration keeps a caller's
// follow-up work from reaching a later registration. At most
// coap.Config.MaxWaiting requests queue for one device (ErrDeviceBusy).
//
// Registrations and observations can outlive the process: a Persister
// (WithPersister) is told of every change, and Restore gives them back at
// the next start, bound again to their transports, so a restart is
// invisible to devices (no Register, same tokens, same location).
//
// It owns protocol behaviour only. Policy — who may register, what to
// observe after a registration, where telemetry goes — belongs to the
// appliance, which implements Handler. The server must not touch the store,
// must not start goroutines per device, and must not block its CoAP read
// loop: Handler methods run on the endpoint's workers.
package server

// Package simulation provides simulated LwM2M devices (temperature, firmware,
// event log, queue mode) and fleets of them, built on the lwm2m client
// engine. It imports only lwm2m.
package simulation

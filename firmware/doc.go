// Package firmware owns the firmware image library, serving images over CoAP
// Block2 and HTTP, Object 5 update orchestration and campaigns. It uses lwm2m
// and store, never webui or appliance.
package firmware

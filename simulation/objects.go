package simulation

import (
	"fmt"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/lwm2m/client"
)

// Object and resource ids the simulation sets (Core Appendix E, OMA
// registry objects 3303, 3313, 20).
const (
	objSecurity  = 0
	objServer    = 1
	objDevice    = 3
	objFirmware  = 5
	objEventLog  = 20
	objTemp      = 3303
	objAccel     = 3313
	resSensor    = 5700
	resUnits     = 5701
	resMinMeas   = 5601
	resMaxMeas   = 5602
	resMinRange  = 5603
	resMaxRange  = 5604
	resResetMM   = 5605
	resTimestamp = 5518
	resX         = 5702
	resY         = 5703
	resZ         = 5704
)

// Paths the fleet and tests use.
var (
	PathTemperature = lwm2m.MustParsePath("/3303/0/5700")
	PathBattery     = lwm2m.MustParsePath("/3/0/9")
	PathAccelX      = lwm2m.MustParsePath("/3313/0/5702")
	PathAccelY      = lwm2m.MustParsePath("/3313/0/5703")
	PathAccelZ      = lwm2m.MustParsePath("/3313/0/5704")
	PathFirmwareURI = lwm2m.MustParsePath("/5/0/1")
)

// newObject builds a value object for a registry model.
func newObject(reg *lwm2m.Registry, id uint16) (*client.ValueObject, error) {
	m, ok := reg.Object(id)
	if !ok {
		return nil, fmt.Errorf("simulation: object %d: %w", id, lwm2m.ErrUnknownObject)
	}
	return client.NewValueObject(m), nil
}

package store

import (
	"context"
	"errors"
	"fmt"
)

// LogPolicy is one device's override of the global log collection
// setting: AutoStart "" follows the global setting, "on" or "off" decides
// for this device; Class, when AutoStart is "on", is the Event Log class
// written to LogClass (4010) before LogStart (0: leave the device's).
type LogPolicy struct {
	AutoStart string `json:"autoStart"`
	Class     int    `json:"class"`
}

func logPolicyKey(endpoint string) string { return "device-logs/" + endpoint }

// Valid checks the values.
func (p LogPolicy) Valid() error {
	switch p.AutoStart {
	case "", "on", "off":
	default:
		return fmt.Errorf("store: log policy: %w: autoStart %q (want \"\", \"on\" or \"off\")", ErrInvalid, p.AutoStart)
	}
	if p.Class < 0 || p.Class > 255 {
		return fmt.Errorf("store: log policy: %w: class %d is not 0–255", ErrInvalid, p.Class)
	}
	return nil
}

// DeviceLogPolicy returns an endpoint's log policy; the zero policy
// (follow the global setting) when none was set.
func (d *DB) DeviceLogPolicy(ctx context.Context, endpoint string) (LogPolicy, error) {
	var p LogPolicy
	err := d.Setting(ctx, logPolicyKey(endpoint), &p)
	if errors.Is(err, ErrNotFound) {
		return LogPolicy{}, nil
	}
	return p, err
}

// SetDeviceLogPolicy stores an endpoint's log policy; the zero policy
// removes the override. An unknown endpoint wraps ErrNotFound.
func (d *DB) SetDeviceLogPolicy(ctx context.Context, endpoint string, p LogPolicy) error {
	if err := p.Valid(); err != nil {
		return err
	}
	if _, err := d.endpointRowID(ctx, endpoint); err != nil {
		return err
	}
	if p == (LogPolicy{}) {
		return d.DeleteSetting(ctx, logPolicyKey(endpoint))
	}
	return d.SetSetting(ctx, logPolicyKey(endpoint), p)
}

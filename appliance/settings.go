package appliance

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// settingsKey is where the policy edited in the web UI is kept in the
// store; the conffile gives the defaults and is never written
// (ARCHITECTURE.md: settings changed in the web UI live in the data dir).
const settingsKey = "policy"

// settings holds the live policy and persists the web UI's changes.
type settings struct {
	db   *store.DB
	base Config
	cur  atomic.Pointer[webui.Settings]
}

var _ webui.SettingsStore = (*settings)(nil)

func newSettings(ctx context.Context, db *store.DB, cfg Config) (*settings, error) {
	s := &settings{db: db, base: cfg}
	v := webui.Settings{
		RetentionDays:       int(cfg.Store.Retention / (24 * time.Hour)),
		AutoObserve:         cfg.LwM2M.Observe.Single,
		QueueWindowSeconds:  int(cfg.LwM2M.QueueAwakeWindow / time.Second),
		AllowUnknownDevices: cfg.LwM2M.AllowUnknownEndpoints,
	}
	var saved webui.Settings
	switch err := db.Setting(ctx, settingsKey, &saved); {
	case err == nil:
		if err := validateSettings(saved); err == nil {
			v = saved
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	s.cur.Store(&v)
	return s, nil
}

func validateSettings(v webui.Settings) error {
	if v.RetentionDays < 1 || v.RetentionDays > 3650 {
		return fmt.Errorf("%w: retention must be 1 to 3650 days", webui.ErrInvalid)
	}
	if v.QueueWindowSeconds < 1 || v.QueueWindowSeconds > 3600 {
		return fmt.Errorf("%w: the queue-mode window must be 1 to 3600 seconds", webui.ErrInvalid)
	}
	for _, p := range v.AutoObserve {
		if _, err := lwm2m.ParsePath(p); err != nil {
			return fmt.Errorf("%w: auto-observe: %v", webui.ErrInvalid, err)
		}
	}
	return nil
}

func (s *settings) LoadSettings(context.Context) (webui.Settings, error) {
	return *s.cur.Load(), nil
}

func (s *settings) SaveSettings(ctx context.Context, v webui.Settings) error {
	if err := validateSettings(v); err != nil {
		return err
	}
	if err := s.db.SetSetting(ctx, settingsKey, v); err != nil {
		return err
	}
	s.cur.Store(&v)
	return nil
}

// policy is what the lifecycle applies to the next registration.
func (s *settings) policy() policy {
	v := s.cur.Load()
	p := policy{
		AllowUnknown:     v.AllowUnknownDevices,
		AwakeWindow:      time.Duration(v.QueueWindowSeconds) * time.Second,
		CompositeObjects: s.base.LwM2M.Observe.CompositeObjects,
	}
	for _, raw := range v.AutoObserve {
		if path, err := lwm2m.ParsePath(raw); err == nil {
			p.ObserveSingle = append(p.ObserveSingle, path)
		}
	}
	return p
}

package appliance

import (
	"context"
	"errors"
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
	// apply puts saved settings into effect in the running components.
	apply func(webui.Settings)
	// saved: the web UI saved settings before this start, and they
	// override the conffile.
	saved bool
}

var _ webui.SettingsStore = (*settings)(nil)

func newSettings(ctx context.Context, db *store.DB, cfg Config) (*settings, error) {
	s := &settings{db: db, base: cfg}
	v := webui.Settings{
		RetentionDays:       int(cfg.Store.Retention / (24 * time.Hour)),
		AutoObserve:         cfg.LwM2M.Observe.Single,
		QueueWindowSeconds:  int(cfg.LwM2M.QueueAwakeWindow / time.Second),
		AllowUnknownDevices: cfg.LwM2M.AllowUnknownEndpoints,
		CompositeObjects:    []int{},
	}
	for _, id := range cfg.LwM2M.Observe.CompositeObjects {
		v.CompositeObjects = append(v.CompositeObjects, int(id))
	}
	var saved webui.Settings
	switch err := db.Setting(ctx, settingsKey, &saved); {
	case err == nil:
		if err := validateSettings(saved); err == nil {
			if saved.CompositeObjects == nil {
				// Saved before the setting existed: keep the conffile's.
				saved.CompositeObjects = v.CompositeObjects
			}
			v, s.saved = saved, true
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	s.cur.Store(&v)
	return s, nil
}

// validateSettings is the web UI's rule, so a value one side accepts the
// other never refuses.
func validateSettings(v webui.Settings) error { return webui.CheckSettings(v) }

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
	if s.apply != nil {
		s.apply(v)
	}
	return nil
}

// policy is what the lifecycle applies to the next registration.
func (s *settings) policy() policy {
	v := s.cur.Load()
	p := policy{
		AllowUnknown: v.AllowUnknownDevices,
		AwakeWindow:  time.Duration(v.QueueWindowSeconds) * time.Second,
		LogAutoStart: v.LogAutoStart,
		LogClass:     v.LogClass,
	}
	for _, id := range v.CompositeObjects {
		p.CompositeObjects = append(p.CompositeObjects, uint16(id))
	}
	for _, raw := range v.AutoObserve {
		if path, err := lwm2m.ParsePath(raw); err == nil {
			p.ObserveSingle = append(p.ObserveSingle, path)
		}
	}
	return p
}

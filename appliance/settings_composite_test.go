package appliance

import (
	"context"
	"slices"
	"testing"
)

// The composite auto-observe objects come from the conffile until the web
// UI saves others; settings saved before the field existed keep the
// conffile's.
func TestCompositeAutoObserveSetting(t *testing.T) {
	ctx := context.Background()
	db := openTestStore(t)
	cfg := DefaultConfig()
	s, err := newSettings(ctx, db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.policy().CompositeObjects; !slices.Equal(got, cfg.LwM2M.Observe.CompositeObjects) {
		t.Fatalf("default composite objects %v, want the conffile's %v", got, cfg.LwM2M.Observe.CompositeObjects)
	}
	v, _ := s.LoadSettings(ctx)
	v.CompositeObjects = []int{3303}
	if err := s.SaveSettings(ctx, v); err != nil {
		t.Fatal(err)
	}
	if got := s.policy().CompositeObjects; !slices.Equal(got, []uint16{3303}) {
		t.Fatalf("after saving: %v", got)
	}
	v.CompositeObjects = []int{70000}
	if err := s.SaveSettings(ctx, v); err == nil {
		t.Fatal("object id 70000 saved")
	}
	// Saved by an older version, without the field.
	if err := db.SetSetting(ctx, settingsKey, map[string]any{"retentionDays": 7, "autoObserve": []string{"3303/0/5700"}, "queueWindowSeconds": 60}); err != nil {
		t.Fatal(err)
	}
	s2, err := newSettings(ctx, db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := s2.policy().CompositeObjects; !slices.Equal(got, cfg.LwM2M.Observe.CompositeObjects) {
		t.Fatalf("old saved settings: %v", got)
	}
}

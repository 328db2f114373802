package appliance

import (
	"errors"
	"os"
	"path/filepath"
)

// ErrRestart is what Run returns after an admin asked for a restart (to
// apply a staged restore): the process exits and its supervisor, systemd
// with Restart=on-failure, starts it again.
var ErrRestart = errors.New("restart requested")

// WithSelfRestart says that a supervisor starts the appliance again when it
// exits with an error (systemd's Restart=), so that the web UI may offer
// "restart now". Without it the UI asks for a restart by hand.
func WithSelfRestart() Option { return func(a *Appliance) { a.selfRestart = true } }

// UnderSystemd reports whether the process was started by systemd, from
// the variables systemd sets for a service (systemd.exec(5)).
func UnderSystemd(getenv func(string) string) bool {
	return getenv("INVOCATION_ID") != "" || getenv("NOTIFY_SOCKET") != ""
}

// requestRestart ends Run with ErrRestart; it reports false when nobody
// would start the appliance again.
func (a *Appliance) requestRestart() bool {
	if !a.selfRestart {
		return false
	}
	a.restartOnce.Do(func() { close(a.restart) })
	return true
}

// restorePending reports whether a verified restore waits for the next
// start.
func (a *Appliance) restorePending() bool {
	_, err := os.Stat(filepath.Join(a.cfg.DataDir, pendingRestoreDir))
	return err == nil
}

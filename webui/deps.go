package webui

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
)

// Deps are what the server needs from the rest of the appliance. Store,
// Data and Registry are required; the others may be nil, in which case the
// routes that need them answer 503 (or 501 for Firmware) with a message
// saying what is missing. Each interface is small so that the appliance can
// implement it over store, the LwM2M server and its PKI without adapters
// that do more than translate.
type Deps struct {
	// Store holds users, sessions, API tokens, endpoints and the audit log;
	// webui calls it directly.
	Store *store.DB
	// Data answers what store's device queries do not (yet): latest
	// values, series, events and logs.
	Data        Data
	Registry    *lwm2m.Registry
	Operations  Operations
	Provisioner Provisioner
	Enrollment  Enrollment
	Events      Events
	// LogEvents is the live feed of device log lines (Broker.FollowLogs),
	// apart from Events so that a log flood never delays the others; nil:
	// the log pages have no live tail.
	LogEvents Events
	System    System
	Settings  SettingsStore
	Firmware  Firmware
	// Registrations ends a deleted device's registration; nil when no
	// LwM2M server runs (tests of the web layer alone).
	Registrations Registrations
	// PKI revokes device credentials and imports CAs; nil: 503.
	PKI    PKI
	Logger *slog.Logger
}

// PKI is the appliance's certificate authority as the admin drives it. Revoke of an
// endpoint without a credential wraps ErrNotFound; a CA that does not
// parse wraps ErrInvalid.
type PKI interface {
	Revoke(ctx context.Context, endpoint string) error
	ImportCA(ctx context.Context, cert []byte) (subject string, err error)
}

// Registrations is the LwM2M server's view of who is registered now
// (lwm2m/server.Server implements it).
type Registrations interface {
	// Evict ends an endpoint's registration; it reports whether there
	// was one.
	Evict(ctx context.Context, endpoint string) bool
}

// Data answers questions about a device's data. Unknown endpoints wrap
// ErrNotFound (webui's or store's).
type Data interface {
	// Latest returns the newest value of every resource (instance) of a
	// device.
	Latest(ctx context.Context, endpoint string) ([]Reading, error)
	// Series returns the points of one resource in [from, to], oldest
	// first, downsampled to at most max points when max > 0.
	Series(ctx context.Context, endpoint string, path lwm2m.Path, from, to time.Time, max int) ([]Point, error)
	// Events returns a device's registration and composite events, newest
	// first; endpoint "" means all devices.
	Events(ctx context.Context, endpoint string, limit int) ([]DeviceEvent, error)
	// Logs returns log lines received from a device, newest first.
	Logs(ctx context.Context, endpoint string, limit int) ([]LogLine, error)
	// NotificationsPerMinute is the ingestion rate over the last minute.
	NotificationsPerMinute(ctx context.Context) (float64, error)
}

// Operations queues device-management operations and reports on them (the
// appliance's dispatcher over store's persisted queue). The request has
// been validated against the object models; the dispatcher persists it
// (store.CreateOperation) and sends it when the device is reachable.
type Operations interface {
	Queue(ctx context.Context, endpoint string, req OperationRequest) (store.Operation, error)
	Operation(ctx context.Context, id int64) (store.Operation, error)
	// Wait blocks until the operation is confirmed or failed, or ctx ends
	// (then it returns ctx's error).
	Wait(ctx context.Context, id int64) (store.Operation, error)
	// List returns a device's operations, newest first.
	List(ctx context.Context, endpoint string, limit int) ([]store.Operation, error)
}

// Provisioner creates a device and its credentials (the appliance, with its
// PKI). An endpoint that exists already wraps ErrConflict.
type Provisioner interface {
	Provision(ctx context.Context, req ProvisionRequest) (Credentials, error)
}

// Rekeyer is a Provisioner that can give an existing device new
// credentials, ending the old ones; an unknown endpoint wraps ErrNotFound.
type Rekeyer interface {
	Rekey(ctx context.Context, req ProvisionRequest) (Credentials, error)
}

// Enrollment renders what a device needs to join, from its fresh
// credentials: the Zephyr Kconfig fragment, nRF91 AT%CMNG commands and a zip
// bundle of both plus the certificates.
type Enrollment interface {
	Kconfig(c Credentials) (string, error)
	ATCommands(c Credentials) (string, error)
	Bundle(c Credentials, w io.Writer) error
}

// Events is the live feed behind server-sent events. Subscribe returns a
// channel that receives events until cancel is called; a slow subscriber
// loses events rather than blocking publishers. Broker implements it.
type Events interface {
	Subscribe() (events <-chan LiveEvent, cancel func())
}

// System is the appliance itself: what it runs, where, and its maintenance
// actions.
type System interface {
	Info(ctx context.Context) (SystemInfo, error)
	// Ready reports whether the store and listeners are up (for /healthz).
	Ready(ctx context.Context) error
	Backup(ctx context.Context, w io.Writer) error
	Restore(ctx context.Context, r io.Reader) error
	// SelfUpdate installs a new binary after checking its signature.
	SelfUpdate(ctx context.Context, binary io.Reader, signature []byte) error
	CACertificate(ctx context.Context) ([]byte, error)
	// WriteMetrics appends the appliance's own Prometheus metrics.
	WriteMetrics(w io.Writer) error
}

// Restarter is a System that can restart the appliance (to apply a staged
// restore); one that cannot wraps ErrUnavailable saying how to do it by hand.
type Restarter interface {
	Restart(ctx context.Context) error
}

// SettingsStore loads and saves the policy the web UI edits; invalid
// settings wrap ErrInvalid.
type SettingsStore interface {
	LoadSettings(ctx context.Context) (Settings, error)
	SaveSettings(ctx context.Context, s Settings) error
}

// Firmware is the firmware library and its deployments; nil until the
// appliance wires it, and then the routes answer 501. Unknown images,
// deployments or endpoints wrap ErrNotFound (webui's or store's); bad
// uploads ErrInvalid or ErrTooLarge; deleting an image in use ErrConflict.
type Firmware interface {
	// Stage streams an upload to disk and checks it; the multipart form
	// may carry the version after the file, so it is committed after.
	Stage(ctx context.Context, r io.Reader) (StagedFirmware, error)
	List(ctx context.Context) ([]FirmwareImage, error)
	Delete(ctx context.Context, imageID string) error
	Deploy(ctx context.Context, imageID string, req DeployRequest) (string, error)
	Deployment(ctx context.Context, id string) (Deployment, error)
	Deployments(ctx context.Context) ([]Deployment, error)
	Cancel(ctx context.Context, id string) error
	// Retry puts the failed devices back in line; it returns how many.
	Retry(ctx context.Context, id string) (int, error)
	// History is a device's part in every deployment, newest first.
	History(ctx context.Context, endpoint string) ([]DeploymentDevice, error)
	// Downloads serves the devices' HTTP(S) downloads under /fw/.
	Downloads() http.Handler
}

// StagedFirmware is an upload on disk, not yet in the library.
type StagedFirmware interface {
	Commit(ctx context.Context, m FirmwareMeta) (FirmwareImage, error)
	Discard()
}

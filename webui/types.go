package webui

import (
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
)

// Role is what a user may do: viewers read, operators also act on devices,
// admins also manage users and the system.
type Role string

const (
	RoleAdmin    Role = "admin"
	RoleOperator Role = "operator"
	RoleViewer   Role = "viewer"
)

// Valid reports whether r is one of the three roles.
func (r Role) Valid() bool { return r == RoleAdmin || r == RoleOperator || r == RoleViewer }

// rank orders roles so that a route can ask for "at least operator".
func (r Role) rank() int {
	switch r {
	case RoleAdmin:
		return 3
	case RoleOperator:
		return 2
	case RoleViewer:
		return 1
	}
	return 0
}

// Reading is one resource value with its time.
type Reading struct {
	Path  lwm2m.Path
	Value lwm2m.Value
	Time  time.Time
}

// Point is one sample of a numeric or other series.
type Point struct {
	Time  time.Time
	Value lwm2m.Value
}

// DeviceEvent is a registration-life event or a composite notification.
type DeviceEvent struct {
	ID       int64
	Endpoint string
	Time     time.Time
	Kind     string // registered, updated, deregistered, composite, …
	Detail   string
	Readings []Reading
}

// LogLine is one line a device sent.
type LogLine struct {
	Time time.Time
	Line string
}

// Operation statuses (the dispatcher's state machine).
const (
	StatusQueued    = "queued"
	StatusSending   = "sending"
	StatusConfirmed = "confirmed"
	StatusFailed    = "failed"
)

// OperationRequest is a validated request to act on a device. Value is set
// for write (typed from the object model when it is known), Values for
// write-composite, Args for execute, Attributes for write-attributes.
type OperationRequest struct {
	// Partial marks a write as a partial update (POST, Core §6.3.4).
	Partial    bool
	Type       string
	Paths      []lwm2m.Path
	Value      *lwm2m.Value
	Values     []lwm2m.Record
	Args       string
	Attributes map[string]string
	Format     lwm2m.Format
	By         string // user who asked
}

// opDone reports whether an operation reached a final state.
func opDone(o store.Operation) bool { return o.Status == StatusConfirmed || o.Status == StatusFailed }

// ProvisionRequest asks for a new device in a security mode. A PSK may be
// given; otherwise the provisioner generates one.
type ProvisionRequest struct {
	Endpoint    string
	Mode        string // nosec, psk, x509, bootstrap
	PSKIdentity string
	PSKKey      []byte
}

// Credentials are what a provisioned device needs; shown once.
type Credentials struct {
	Endpoint      string
	Mode          string
	ServerURI     string
	PSKIdentity   string
	PSKKey        []byte
	Certificate   string // PEM
	PrivateKey    string // PEM
	CACertificate string // PEM
}

// SystemInfo describes the running appliance.
type SystemInfo struct {
	Version   string
	Started   time.Time
	Ports     []Port
	DataDir   string
	DiskFree  uint64
	DiskTotal uint64
	DBSize    uint64
	// RestorePending: a verified backup waits for the next start.
	RestorePending bool
	// CanRestart: the appliance can restart itself (systemd brings it
	// back); otherwise someone restarts it by hand.
	CanRestart bool
}

// Port is one listener in use.
type Port struct {
	Name string // http, coap, coaps, bootstrap …
	Addr string
}

// Settings are the policy an admin edits in the web UI.
type Settings struct {
	RetentionDays       int      `json:"retentionDays"`
	AutoObserve         []string `json:"autoObserve"`
	QueueWindowSeconds  int      `json:"queueWindowSeconds"`
	AllowUnknownDevices bool     `json:"allowUnknownDevices"`
	// Device logs (Event Log, object 20): how long and how much to keep (0:
	// the defaults, 30 days and 64 MiB), whether to start collection at
	// every registration, and the LogClass to write first (0: leave it).
	LogRetentionDays int  `json:"logRetentionDays"`
	LogMaxMiB        int  `json:"logMaxMiB"`
	LogAutoStart     bool `json:"logAutoStart"`
	LogClass         int  `json:"logClass"`
	// CompositeObjects are the sensor objects whose announced instances
	// one composite observation covers at every registration (LwM2M 1.1+).
	CompositeObjects []int `json:"compositeObjects"`
}

// FirmwareImage is one image in the library.
type FirmwareImage struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Version string    `json:"version"`
	SHA256  string    `json:"sha256"`
	Size    int64     `json:"size"`
	Notes   string    `json:"notes,omitempty"`
	Target  string    `json:"target,omitempty"`
	Created time.Time `json:"created"`
}

// FirmwareMeta describes an uploaded image.
type FirmwareMeta struct {
	Version, Name, Notes, Target string
}

// DeployRequest is a deployment's devices and rollout policy (zero: the
// appliance's defaults).
type DeployRequest struct {
	Endpoints []string `json:"endpoints"`
	// CurrentVersion adds every device now reporting this firmware
	// version (3/0/3): a group by filter.
	CurrentVersion string `json:"currentVersion,omitempty"`
	// Model adds every device of this model (3/0/1, exact match); with
	// CurrentVersion, every device of the model at that version.
	Model string `json:"model,omitempty"`
	// MaxConcurrent devices under way at once; TimeoutSeconds per device
	// step; FailureThreshold (0..1) halts the deployment when the failed
	// share passes it.
	MaxConcurrent    int     `json:"maxConcurrent"`
	TimeoutSeconds   int     `json:"timeoutSeconds"`
	FailureThreshold float64 `json:"failureThreshold"`
}

// Deployment is a rollout of an image to devices.
type Deployment struct {
	ID               string             `json:"id"`
	FirmwareID       string             `json:"firmwareId"`
	Version          string             `json:"version"`
	Status           string             `json:"status"`
	Reason           string             `json:"reason,omitempty"`
	Size             int64              `json:"size"`
	MaxConcurrent    int                `json:"maxConcurrent"`
	TimeoutSeconds   int                `json:"timeoutSeconds"`
	FailureThreshold float64            `json:"failureThreshold"`
	Counts           map[string]int     `json:"counts"`
	Created          time.Time          `json:"created"`
	Devices          []DeploymentDevice `json:"devices"`
}

// DeploymentDevice is one device's progress in a deployment. Result is the
// last Object 5 Update Result (5/0/5) and its meaning; Progress counts the
// bytes of the image served to the device.
type DeploymentDevice struct {
	Deployment  string    `json:"deployment,omitempty"`
	Version     string    `json:"version,omitempty"`
	Endpoint    string    `json:"endpoint"`
	State       string    `json:"state"`
	Result      string    `json:"result,omitempty"`
	ResultCode  int       `json:"resultCode"`
	Error       string    `json:"error,omitempty"`
	Method      string    `json:"method,omitempty"`
	Progress    int64     `json:"progress"`
	FromVersion string    `json:"fromVersion,omitempty"`
	Updated     time.Time `json:"updated"`
}

// LiveEvent is one item of the live feed. Kind is "registered",
// "updated", "unregistered" (store's event kinds), "value" (Path, Value)
// or "operation" (OperationID, Status).
type LiveEvent struct {
	Kind        string      `json:"kind"`
	Endpoint    string      `json:"endpoint"`
	Time        time.Time   `json:"time"`
	Path        string      `json:"path,omitempty"`
	Value       lwm2m.Value `json:"value,omitzero"`
	OperationID int64       `json:"operationId,omitempty"`
	Status      string      `json:"status,omitempty"`
	// Logs are the device log lines of a "log" event (LogEvents feed).
	Logs []logJSON `json:"logs,omitempty"`
	// Skipped counts lines of the same commit left out of Logs.
	Skipped int `json:"skipped,omitempty"`
	// Deployment and Progress: kind "deployment", a device's state
	// (Status) or download progress (bytes) in a firmware deployment.
	Deployment int64 `json:"deployment,omitempty"`
	Progress   int64 `json:"progress,omitempty"`
}

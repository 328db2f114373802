package webui

import (
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
	"github.com/labstack/echo/v5"
)

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

type deviceJSON struct {
	Endpoint     string `json:"endpoint"`
	Online       bool   `json:"online"`
	Status       string `json:"status"`
	Pending      bool   `json:"pending,omitempty"`
	LastSeen     string `json:"lastSeen,omitempty"`
	Lifetime     int64  `json:"lifetime"`
	Binding      string `json:"binding"`
	LwM2MVersion string `json:"lwm2mVersion"`
	QueueMode    bool   `json:"queueMode"`
	Security     string `json:"security"`
	Objects      string `json:"objects"`
	Firmware     string `json:"firmwareVersion,omitempty"`
	Model        string `json:"model,omitempty"`
	Address      string `json:"address,omitempty"`
	Registered   string `json:"registeredAt,omitempty"`
}

// status is what the UI shows: a queue-mode device that has not been heard
// from within the queue window is asleep, not gone.
func (s *Server) status(d store.Endpoint) string {
	switch {
	case d.Pending:
		return "pending"
	case !d.Online && d.LastSeen.IsZero() && d.RegisteredAt.IsZero():
		// Provisioned and waiting for its first registration: not a
		// device that went away.
		return "never-connected"
	case !d.Online:
		return "offline"
	case d.QueueMode && s.now().Sub(d.LastSeen) > time.Duration(s.queueWindow.Load()):
		return "sleeping"
	}
	return "online"
}

func (s *Server) toDeviceJSON(d store.Endpoint) deviceJSON {
	j := deviceJSON{Endpoint: d.Name, Online: d.Online, Status: s.status(d), Pending: d.Pending, Lifetime: d.Lifetime, Binding: d.Binding,
		LwM2MVersion: d.LwM2MVersion, QueueMode: d.QueueMode, Security: d.SecurityMode, Objects: d.ObjectLinks,
		Firmware: d.FirmwareVersion, Model: d.Model, Address: d.Address}
	if !d.LastSeen.IsZero() {
		j.LastSeen = rfc3339(d.LastSeen)
	}
	if !d.RegisteredAt.IsZero() {
		j.Registered = rfc3339(d.RegisteredAt)
	}
	return j
}

// deviceQuery reads the list's query parameters; bad ones are 400.
func deviceQuery(c *echo.Context) (store.EndpointQuery, error) {
	q := store.EndpointQuery{
		Search:          strings.TrimSpace(c.QueryParam("q")),
		SecurityMode:    c.QueryParam("security"),
		FirmwareVersion: c.QueryParam("firmware"),
		Model:           strings.TrimSpace(c.QueryParam("model")),
		Sort:            c.QueryParam("sort"),
		Limit:           50,
	}
	for _, f := range []struct {
		name string
		dst  **bool
	}{{"online", &q.Online}, {"pending", &q.Pending}} {
		switch c.QueryParam(f.name) {
		case "":
		case "true", "1":
			t := true
			*f.dst = &t
		case "false", "0":
			v := false
			*f.dst = &v
		default:
			return q, errorf(http.StatusBadRequest, "%s must be true or false", f.name)
		}
	}
	key, desc := strings.CutPrefix(q.Sort, "-")
	switch key {
	case "endpoint":
		key = "name"
	case "firmware":
		key = "firmwareVersion"
	}
	switch key {
	case "", "name", "lastSeen", "registeredAt", "firmwareVersion", "security", "online", "model":
	default:
		return q, errorf(http.StatusBadRequest, "sort must be name, lastSeen, registeredAt, firmwareVersion, security, online or model (prefix - for descending)")
	}
	if desc {
		key = "-" + key
	}
	q.Sort = key
	switch q.SecurityMode {
	case "", "nosec", "psk", "x509", "bootstrap":
	default:
		return q, errorf(http.StatusBadRequest, "security must be nosec, psk, x509 or bootstrap")
	}
	for _, p := range []struct {
		name string
		dst  *int
		max  int
	}{{"offset", &q.Offset, 1 << 30}, {"limit", &q.Limit, 1000}} {
		if v := c.QueryParam(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > p.max {
				return q, errorf(http.StatusBadRequest, "%s must be an integer from 0 to %d", p.name, p.max)
			}
			*p.dst = n
		}
	}
	if q.Limit == 0 {
		q.Limit = 50
	}
	return q, nil
}

func (s *Server) apiListDevices(c *echo.Context) error {
	q, err := deviceQuery(c)
	if err != nil {
		return err
	}
	eps, total, err := s.deps.Store.ListEndpoints(c.Request().Context(), q)
	if err != nil {
		return err
	}
	out := make([]deviceJSON, len(eps))
	for i, d := range eps {
		out[i] = s.toDeviceJSON(d)
	}
	return c.JSON(http.StatusOK, map[string]any{"devices": out, "total": total, "offset": q.Offset, "limit": q.Limit})
}

type resourceJSON struct {
	Path  string `json:"path"`
	Name  string `json:"name,omitempty"`
	Value any    `json:"value"`
	Units string `json:"units,omitempty"`
	Time  string `json:"time"`
}

func (s *Server) apiGetDevice(c *echo.Context) error {
	ep := c.Param("ep")
	ctx := c.Request().Context()
	d, err := s.deps.Store.Endpoint(ctx, ep)
	if err != nil {
		return err
	}
	latest, err := s.deps.Data.Latest(ctx, ep)
	if err != nil {
		return err
	}
	res := make([]resourceJSON, 0, len(latest))
	values := make(map[string]any, len(latest))
	units := map[lwm2m.Path]string{}
	for _, r := range latest {
		if r.Path.Len() == 3 && r.Path.ResourceID() == ipsoSensorUnits {
			units[r.Path.Truncate(2)] = r.Value.Text()
		}
	}
	for _, r := range latest {
		if r.Path.Len() < 3 || r.Path.ObjectID() == store.RegistrationObject {
			continue // registrations are events, not device resources
		}
		j := resourceJSON{Path: r.Path.Relative(), Value: r.Value, Time: rfc3339(r.Time)}
		if m, ok := s.deps.Registry.Resource(r.Path.ObjectID(), r.Path.ResourceID()); ok {
			j.Name, j.Units = m.Name, m.Units
		}
		if j.Units == "" && ipsoMeasured[r.Path.ResourceID()] {
			j.Units = units[r.Path.Truncate(2)]
		}
		res = append(res, j)
		values[j.Path] = r.Value
	}
	return c.JSON(http.StatusOK, map[string]any{"device": s.toDeviceJSON(d), "values": values, "resources": res})
}

type provisionBody struct {
	Endpoint string `json:"endpoint"`
	Security struct {
		Mode        string `json:"mode"`
		PSKIdentity string `json:"pskIdentity"`
		PSKKey      string `json:"pskKey"`
	} `json:"security"`
}

type credentialsJSON struct {
	Mode          string `json:"mode"`
	ServerURI     string `json:"serverUri,omitempty"`
	PSKIdentity   string `json:"pskIdentity,omitempty"`
	PSKKey        string `json:"pskKey,omitempty"`
	Certificate   string `json:"certificate,omitempty"`
	PrivateKey    string `json:"privateKey,omitempty"`
	CACertificate string `json:"caCertificate,omitempty"`
}

func toCredentialsJSON(cr Credentials) credentialsJSON {
	j := credentialsJSON{Mode: cr.Mode, ServerURI: cr.ServerURI, PSKIdentity: cr.PSKIdentity,
		Certificate: cr.Certificate, PrivateKey: cr.PrivateKey, CACertificate: cr.CACertificate}
	if len(cr.PSKKey) > 0 {
		j.PSKKey = hex.EncodeToString(cr.PSKKey)
	}
	return j
}

// checkEndpointName accepts what LwM2M clients use (urn:imei:…, uuids,
// host-like names) and refuses what would break paths, logs or the UI.
// checkEndpointName is the one rule for endpoint names (lwm2m), as a 422.
func checkEndpointName(ep string) error {
	if err := lwm2m.CheckEndpointName(ep); err != nil {
		return errorf(http.StatusUnprocessableEntity, "%s", err.Error())
	}
	return nil
}

// provisionRequest validates a provisioning request (shared by the API and
// the enrollment wizard).
func provisionRequest(ep, mode, identity, keyHex string) (ProvisionRequest, error) {
	if err := checkEndpointName(ep); err != nil {
		return ProvisionRequest{}, err
	}
	switch mode {
	case "nosec", "psk", "x509", "bootstrap":
	case "":
		return ProvisionRequest{}, errorf(http.StatusUnprocessableEntity, "security.mode is required (nosec, psk, x509 or bootstrap)")
	default:
		return ProvisionRequest{}, errorf(http.StatusUnprocessableEntity, "security.mode %q unknown (nosec, psk, x509 or bootstrap)", mode)
	}
	req := ProvisionRequest{Endpoint: ep, Mode: mode, PSKIdentity: identity}
	if keyHex != "" {
		if mode != "psk" && mode != "bootstrap" {
			return req, errorf(http.StatusUnprocessableEntity, "a PSK key is only for psk or bootstrap mode")
		}
		k, err := hex.DecodeString(keyHex)
		if err != nil || len(k) < 16 || len(k) > 64 {
			return req, errorf(http.StatusUnprocessableEntity, "pskKey must be 16 to 64 bytes in hex")
		}
		req.PSKKey = k
	}
	return req, nil
}

func (s *Server) apiProvision(c *echo.Context) error {
	if s.deps.Provisioner == nil {
		return errorf(http.StatusServiceUnavailable, "provisioning is not available")
	}
	var body provisionBody
	if err := decodeJSON(c, &body); err != nil {
		return err
	}
	req, err := provisionRequest(body.Endpoint, body.Security.Mode, body.Security.PSKIdentity, body.Security.PSKKey)
	if err != nil {
		return err
	}
	cr, err := s.deps.Provisioner.Provision(c.Request().Context(), req)
	if err != nil {
		return err
	}
	s.audit(c, "provision", req.Endpoint)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusCreated, map[string]any{"endpoint": cr.Endpoint, "security": toCredentialsJSON(cr)})
}

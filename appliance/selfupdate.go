package appliance

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"aead.dev/minisign"
)

// Refusals of a self-update package. The appliance keeps running the
// installed version after any of them.
var (
	ErrUpdateSignature = errors.New("update: signature does not verify")
	ErrUpdateArch      = errors.New("update: wrong architecture")
	ErrUpdateNotNewer  = errors.New("update: version is not newer than the installed one")
	ErrUpdatePackage   = errors.New("update: not a flownexus package")
	ErrUpdateBusy      = errors.New("update: another update is in progress")
	ErrUpdateTooLarge  = errors.New("update: package too large")
	// ErrUpdateNoKey: the appliance has no key to check packages with,
	// so self-update is not set up; nothing uploaded is looked at.
	ErrUpdateNoKey = errors.New("update: self-update is not set up")
)

// PackageName is the Debian package the appliance is installed from.
const PackageName = "flownexus"

// maxUpdateSize bounds an uploaded package; the real one is ~15 MiB.
const maxUpdateSize = 256 << 20

// Files in the updates dir shared by the service (which verifies and stages
// a package) and the root helper (which installs it).
const (
	updateRequestFile = "request.json" // watched by flownexus-update.path
	updateStatusFile  = "status.json"
	installedDebFile  = "installed.deb" // the package of the running version, kept for rollback
)

// Update states in UpdateStatus.State.
const (
	UpdatePending    = "pending"
	UpdateInstalling = "installing"
	UpdateSucceeded  = "succeeded"
	UpdateRolledBack = "rolled-back"
	UpdateFailed     = "failed"
)

// UpdateStatus is the last self-update's progress, written by the helper.
type UpdateStatus struct {
	State    string    `json:"state"`
	Version  string    `json:"version"`
	Previous string    `json:"previous,omitempty"`
	Error    string    `json:"error,omitempty"`
	Time     time.Time `json:"time"`
}

// updateRequest is what the service hands the root helper.
type updateRequest struct {
	Package   string `json:"package"`   // file name in the updates dir
	Signature string `json:"signature"` // its .minisig file name
	Version   string `json:"version"`
}

// Updater verifies uploaded packages and hands them to the root helper unit.
// The service runs it as the unprivileged flownexus user: it writes the
// package and a request into the updates dir, and flownexus-update.path
// (watched by systemd, PID 1) starts flownexus-update.service as root, outside
// the service's cgroup, so the install survives the service's restart.
type Updater struct {
	dir     string
	keyFile string
	arch    string
	current string
	log     *slog.Logger
	now     func() time.Time
}

// UpdaterOption adjusts an Updater; tests use them to stand in for the
// installed version and architecture.
type UpdaterOption func(*Updater)

// WithUpdateArch overrides the architecture packages must be built for.
func WithUpdateArch(arch string) UpdaterOption { return func(u *Updater) { u.arch = arch } }

// WithInstalledVersion overrides the version packages must be newer than.
func WithInstalledVersion(v string) UpdaterOption { return func(u *Updater) { u.current = v } }

// WithUpdateLogger sets the logger.
func WithUpdateLogger(l *slog.Logger) UpdaterOption { return func(u *Updater) { u.log = l } }

// NewUpdater returns an Updater for cfg's updates dir and public key.
func NewUpdater(cfg Config, opts ...UpdaterOption) *Updater {
	u := &Updater{
		dir:     cfg.UpdatesDir(),
		keyFile: cfg.Update.PublicKeyFile,
		arch:    DebianArch(),
		current: Version,
		log:     slog.New(slog.DiscardHandler),
		now:     time.Now,
	}
	for _, o := range opts {
		o(u)
	}
	u.log = u.log.With("component", "selfupdate")
	return u
}

// Verify checks a package file against its minisign signature, the public
// key installed with the appliance, the architecture and the installed
// version, and returns what the package is.
func (u *Updater) Verify(pkgPath string, signature []byte) (PackageInfo, error) {
	info, err := u.verifySigned(pkgPath, signature)
	if err != nil {
		return info, err
	}
	c, err := CompareDebVersions(info.Version, u.current)
	if err != nil {
		return info, fmt.Errorf("%w: installed version: %w", ErrUpdateNotNewer, err)
	}
	if c <= 0 {
		return info, fmt.Errorf("%w: package %s, installed %s", ErrUpdateNotNewer, info.Version, u.current)
	}
	return info, nil
}

// verifySigned checks the signature, the package name and the architecture:
// all a rollback package needs, since it is older by design.
func (u *Updater) verifySigned(pkgPath string, signature []byte) (PackageInfo, error) {
	key, err := u.publicKey()
	if err != nil {
		return PackageInfo{}, err
	}
	pkg, err := os.ReadFile(pkgPath)
	if err != nil {
		return PackageInfo{}, fmt.Errorf("update: %w", err)
	}
	// Signature first: nothing of an unauthenticated file is parsed.
	if !minisign.Verify(key, pkg, signature) {
		return PackageInfo{}, ErrUpdateSignature
	}
	info, err := ReadPackageInfo(bytes.NewReader(pkg))
	if err != nil {
		return PackageInfo{}, fmt.Errorf("%w: %w", ErrUpdatePackage, err)
	}
	if info.Package != PackageName {
		return info, fmt.Errorf("%w: package is %q", ErrUpdatePackage, info.Package)
	}
	if info.Architecture != u.arch {
		return info, fmt.Errorf("%w: package is for %s, this appliance is %s", ErrUpdateArch, info.Architecture, u.arch)
	}
	return info, nil
}

// publicKey reads the release key; a missing or unreadable one is
// ErrUpdateNoKey with what to install where.
func (u *Updater) publicKey() (minisign.PublicKey, error) {
	key, err := minisign.PublicKeyFromFile(u.keyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return key, fmt.Errorf("%w: the public key %s is missing; install the release's minisign public key there "+
			"(the .deb ships it; see docs/operations.md, \"Self-update\") or set update.public_key_file", ErrUpdateNoKey, u.keyFile)
	}
	if err != nil {
		return key, fmt.Errorf("%w: the public key %s does not load (%v); install the release's minisign public key there", ErrUpdateNoKey, u.keyFile, err)
	}
	return key, nil
}

// Submit takes an uploaded package and its minisign signature, verifies
// them and hands the install to the root helper. It returns once the
// request is queued; Status reports the outcome. A refused package leaves
// nothing behind.
func (u *Updater) Submit(ctx context.Context, pkg io.Reader, signature []byte) (PackageInfo, error) {
	// Without a key nothing can be verified: say so before reading the upload.
	if _, err := u.publicKey(); err != nil {
		return PackageInfo{}, err
	}
	if err := os.MkdirAll(u.dir, 0o700); err != nil {
		return PackageInfo{}, fmt.Errorf("update: %w", err)
	}
	if _, err := os.Stat(filepath.Join(u.dir, updateRequestFile)); err == nil {
		return PackageInfo{}, ErrUpdateBusy
	}
	if st, err := u.Status(); err == nil && (st.State == UpdatePending || st.State == UpdateInstalling) && u.now().Sub(st.Time) < 15*time.Minute {
		return PackageInfo{}, ErrUpdateBusy
	}
	tmp, err := os.CreateTemp(u.dir, "upload-*.deb")
	if err != nil {
		return PackageInfo{}, fmt.Errorf("update: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(tmp, io.LimitReader(readerWithContext(ctx, pkg), maxUpdateSize+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return PackageInfo{}, fmt.Errorf("update: upload: %w", err)
	}
	if n > maxUpdateSize {
		return PackageInfo{}, fmt.Errorf("%w: more than %d MiB", ErrUpdateTooLarge, maxUpdateSize>>20)
	}
	info, err := u.Verify(tmp.Name(), signature)
	if err != nil {
		u.log.Warn("update refused", "err", err)
		return info, err
	}
	base := fmt.Sprintf("%s_%s_%s.deb", info.Package, safeVersion(info.Version), info.Architecture)
	if err := os.Rename(tmp.Name(), filepath.Join(u.dir, base)); err != nil {
		return info, fmt.Errorf("update: %w", err)
	}
	keep = true
	if err := writeFileAtomic(filepath.Join(u.dir, base+".minisig"), signature, 0o644); err != nil {
		return info, fmt.Errorf("update: %w", err)
	}
	if err := u.writeStatus(UpdateStatus{State: UpdatePending, Version: info.Version, Previous: u.current, Time: u.now()}); err != nil {
		return info, err
	}
	req, _ := json.Marshal(updateRequest{Package: base, Signature: base + ".minisig", Version: info.Version})
	// The request appears last and whole: its existence starts the helper.
	if err := writeFileAtomic(filepath.Join(u.dir, updateRequestFile), req, 0o644); err != nil {
		return info, fmt.Errorf("update: %w", err)
	}
	u.log.Info("update handed to the helper", "version", info.Version, "package", base)
	return info, nil
}

// Status returns the last update's status; fs.ErrNotExist when there was
// none.
func (u *Updater) Status() (UpdateStatus, error) {
	b, err := os.ReadFile(filepath.Join(u.dir, updateStatusFile))
	if err != nil {
		return UpdateStatus{}, fmt.Errorf("update status: %w", err)
	}
	var st UpdateStatus
	if err := json.Unmarshal(b, &st); err != nil {
		return UpdateStatus{}, fmt.Errorf("update status: %w", err)
	}
	return st, nil
}

func (u *Updater) writeStatus(st UpdateStatus) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := writeFileAtomic(filepath.Join(u.dir, updateStatusFile), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}

// HelperOptions are the root helper's actions; the zero value uses dpkg and
// the appliance's /healthz.
type HelperOptions struct {
	// Install installs a .deb; default: dpkg -i with the conffiles kept.
	Install func(ctx context.Context, deb string) error
	// Healthy waits for the restarted service to answer /healthz;
	// default: poll cfg's HTTP address on loopback for up to HealthWait.
	Healthy func(ctx context.Context) error
	// HealthWait bounds the default Healthy; default 90 s.
	HealthWait time.Duration
	Log        *slog.Logger
}

var safeVersionRE = regexp.MustCompile(`[^0-9A-Za-z.+~-]`)

// safeVersion makes a version usable in a file name (dpkg writes ':' as %3a).
func safeVersion(v string) string { return safeVersionRE.ReplaceAllString(v, "%3a") }

// RunUpdateHelper is the root side of a self-update, run by
// flownexus-update.service when a request appears. The updates dir belongs
// to the service's user, who must not be able to get anything unsigned
// installed: the helper copies each package into its own private directory
// first and verifies and installs only that copy. It installs the new
// package, waits for the restarted service to be healthy, and rolls back to
// the previous signed package when it is not. The outcome is written to the
// status file for the web UI.
func RunUpdateHelper(ctx context.Context, cfg Config, u *Updater, opts HelperOptions) error {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "update-helper")
	if opts.Install == nil {
		opts.Install = dpkgInstall
	}
	if opts.HealthWait == 0 {
		opts.HealthWait = 90 * time.Second
	}
	if opts.Healthy == nil {
		opts.Healthy = func(ctx context.Context) error { return waitHealthy(ctx, cfg, opts.HealthWait) }
	}
	reqPath := filepath.Join(u.dir, updateRequestFile)
	b, err := os.ReadFile(reqPath)
	if err != nil {
		return fmt.Errorf("update helper: %w", err)
	}
	// Removed first: the path unit starts the helper while it exists.
	if err := os.Remove(reqPath); err != nil {
		return fmt.Errorf("update helper: %w", err)
	}
	var req updateRequest
	if err := json.Unmarshal(b, &req); err != nil || !plainName(req.Package) || !plainName(req.Signature) {
		return u.fail(log, UpdateStatus{State: UpdateFailed, Error: "malformed update request"}, fmt.Errorf("%w: malformed request", ErrUpdatePackage))
	}
	defer os.Remove(filepath.Join(u.dir, req.Package))
	defer os.Remove(filepath.Join(u.dir, req.Signature))

	work, err := os.MkdirTemp("", "flownexus-update-")
	if err != nil {
		return u.fail(log, UpdateStatus{State: UpdateFailed, Version: req.Version, Error: err.Error()}, err)
	}
	defer os.RemoveAll(work)
	pkg, sig, err := copyPrivate(work, "new.deb", filepath.Join(u.dir, req.Package), filepath.Join(u.dir, req.Signature))
	if err != nil {
		return u.fail(log, UpdateStatus{State: UpdateFailed, Version: req.Version, Error: err.Error()}, err)
	}
	info, err := u.Verify(pkg, sig)
	if err != nil {
		return u.fail(log, UpdateStatus{State: UpdateFailed, Version: req.Version, Previous: u.current, Error: err.Error()}, err)
	}
	// The package to roll back to, if the last update left a signed one.
	prev, prevSig, prevErr := copyPrivate(work, "prev.deb", filepath.Join(u.dir, installedDebFile), filepath.Join(u.dir, installedDebFile+".minisig"))
	if prevErr == nil {
		_, prevErr = u.verifySigned(prev, prevSig)
	}

	st := UpdateStatus{State: UpdateInstalling, Version: info.Version, Previous: u.current, Time: u.now()}
	if err := u.writeStatus(st); err != nil {
		return err
	}
	log.Info("installing", "version", info.Version, "previous", u.current)
	installErr := opts.Install(ctx, pkg)
	if installErr == nil {
		installErr = opts.Healthy(ctx)
	}
	if installErr == nil {
		// Kept, signed, for the next update's rollback.
		if err := copyFileAtomic(pkg, filepath.Join(u.dir, installedDebFile)); err != nil {
			log.Warn("keeping the package for a later rollback failed", "err", err)
		} else if err := writeFileAtomic(filepath.Join(u.dir, installedDebFile+".minisig"), sig, 0o644); err != nil {
			log.Warn("keeping the package for a later rollback failed", "err", err)
		}
		st.State, st.Time = UpdateSucceeded, u.now()
		log.Info("update succeeded", "version", info.Version)
		return u.writeStatus(st)
	}
	log.Error("update failed, rolling back", "version", info.Version, "err", installErr)
	if prevErr != nil {
		st.State, st.Error = UpdateFailed, fmt.Sprintf("%v; no previous signed package to roll back to (%v)", installErr, prevErr)
		return u.fail(log, st, installErr)
	}
	if err := opts.Install(ctx, prev); err != nil {
		st.State, st.Error = UpdateFailed, fmt.Sprintf("%v; rollback failed: %v", installErr, err)
		return u.fail(log, st, installErr)
	}
	if err := opts.Healthy(ctx); err != nil {
		st.State, st.Error = UpdateFailed, fmt.Sprintf("%v; rolled back but still unhealthy: %v", installErr, err)
		return u.fail(log, st, installErr)
	}
	st.State, st.Error = UpdateRolledBack, installErr.Error()
	return u.fail(log, st, installErr)
}

// plainName accepts a file name without any directory part.
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && filepath.Base(s) == s
}

// copyPrivate copies a package and reads its signature into work, a
// directory only root can write, so that the file verified is the file
// installed.
func copyPrivate(work, name, pkg, sig string) (string, []byte, error) {
	dst := filepath.Join(work, name)
	if err := copyFileAtomic(pkg, dst); err != nil {
		return "", nil, err
	}
	b, err := os.ReadFile(sig)
	if err != nil {
		return "", nil, err
	}
	return dst, b, nil
}

func copyFileAtomic(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	b, err := io.ReadAll(io.LimitReader(in, maxUpdateSize+1))
	if err != nil {
		return err
	}
	if len(b) > maxUpdateSize {
		return fmt.Errorf("%w: %s", ErrUpdateTooLarge, src)
	}
	return writeFileAtomic(dst, b, 0o644)
}

func (u *Updater) fail(log *slog.Logger, st UpdateStatus, err error) error {
	st.Time = u.now()
	if werr := u.writeStatus(st); werr != nil {
		log.Error("writing the update status failed", "err", werr)
	}
	return err
}

// dpkgInstall installs a package keeping edited conffiles; the package's
// postinst restarts the service.
func dpkgInstall(ctx context.Context, deb string) error {
	cmd := exec.CommandContext(ctx, "dpkg", "--force-confold", "--force-confdef", "-i", deb)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("dpkg -i %s: %w: %s", filepath.Base(deb), err, lastLine(out))
	}
	return nil
}

// waitHealthy polls /healthz on loopback until it answers 200 or the wait
// runs out.
func waitHealthy(ctx context.Context, cfg Config, wait time.Duration) error {
	url, err := healthURL(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	client := &http.Client{
		Timeout: 5 * time.Second,
		// The appliance's own CA signed the loopback certificate.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s answered %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %s: %v", wait, last)
		case <-tick.C:
		}
	}
}

func healthURL(cfg Config) (string, error) {
	_, port, err := net.SplitHostPort(cfg.Listen.HTTP)
	if err != nil {
		return "", fmt.Errorf("listen.http: %w", err)
	}
	scheme := "http"
	if cfg.HTTP.HTTPS {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort("127.0.0.1", port) + "/healthz", nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// writeFileAtomic writes via a temporary file and a rename so that a reader
// never sees half a file.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// readerWithContext stops a long upload when ctx ends.
func readerWithContext(ctx context.Context, r io.Reader) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		return r.Read(p)
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

package appliance

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"aead.dev/minisign"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/flownexus/flownexus/webui"
)

// makeDeb builds a minimal Debian binary package (deb(5)): an ar archive of
// debian-binary, control.tar<ext> holding ./control, and data.tar.gz.
func makeDeb(t testing.TB, control, ext string) []byte {
	t.Helper()
	var ctar bytes.Buffer
	tw := tar.NewWriter(&ctar)
	tw.WriteHeader(&tar.Header{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "./control", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(control))})
	tw.Write([]byte(control))
	tw.Close()
	var member bytes.Buffer
	switch ext {
	case "":
		member = ctar
	case ".gz":
		zw := gzip.NewWriter(&member)
		zw.Write(ctar.Bytes())
		zw.Close()
	case ".xz":
		zw, err := xz.NewWriter(&member)
		if err != nil {
			t.Fatal(err)
		}
		zw.Write(ctar.Bytes())
		zw.Close()
	case ".zst":
		zw, _ := zstd.NewWriter(&member)
		zw.Write(ctar.Bytes())
		zw.Close()
	}
	var data bytes.Buffer
	dz := gzip.NewWriter(&data)
	dt := tar.NewWriter(dz)
	body := []byte("#!/bin/sh\necho flownexus\n")
	dt.WriteHeader(&tar.Header{Name: "./usr/bin/flownexus", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(body))})
	dt.Write(body)
	dt.Close()
	dz.Close()

	var ar bytes.Buffer
	ar.WriteString("!<arch>\n")
	add := func(name string, b []byte) {
		fmt.Fprintf(&ar, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", name, 0, 0, 0, "100644", len(b))
		ar.Write(b)
		if len(b)%2 == 1 {
			ar.WriteByte('\n')
		}
	}
	add("debian-binary", []byte("2.0\n"))
	add("control.tar"+ext, member.Bytes())
	add("data.tar.gz", data.Bytes())
	return ar.Bytes()
}

func control(pkg, version, arch string) string {
	return fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: FlowNexus <root@localhost>\nDescription: test\n multi-line\n", pkg, version, arch)
}

func TestReadPackageInfo(t *testing.T) {
	for _, ext := range []string{"", ".gz", ".xz", ".zst"} {
		t.Run("control.tar"+ext, func(t *testing.T) {
			deb := makeDeb(t, control("flownexus", "1:1.2.3-1", "arm64"), ext)
			info, err := ReadPackageInfo(bytes.NewReader(deb))
			if err != nil {
				t.Fatal(err)
			}
			if info != (PackageInfo{Package: "flownexus", Version: "1:1.2.3-1", Architecture: "arm64"}) {
				t.Errorf("info = %+v", info)
			}
		})
	}
}

func TestReadPackageInfoRefusals(t *testing.T) {
	good := makeDeb(t, control("flownexus", "1.0", "amd64"), ".gz")
	cases := map[string][]byte{
		"empty":            nil,
		"not ar":           []byte("PK\x03\x04 zip file"),
		"truncated":        good[:100],
		"no control field": makeDeb(t, "Package: flownexus\nVersion: 1.0\n", ".gz"),
		"bad version":      makeDeb(t, control("flownexus", "one.two", "amd64"), ".gz"),
		"bad header":       append([]byte("!<arch>\n"), bytes.Repeat([]byte("x"), 60)...),
		"only magic":       []byte("!<arch>\n"),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ReadPackageInfo(bytes.NewReader(b)); !errors.Is(err, ErrBadPackage) {
				t.Errorf("err = %v, want ErrBadPackage", err)
			}
		})
	}
}

func FuzzReadPackageInfo(f *testing.F) {
	for _, ext := range []string{"", ".gz", ".xz", ".zst"} {
		f.Add(makeDeb(f, control("flownexus", "1.0-1", "amd64"), ext))
	}
	f.Add([]byte("!<arch>\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := ReadPackageInfo(bytes.NewReader(b))
		if err == nil && (info.Package == "" || info.Version == "" || info.Architecture == "") {
			t.Fatalf("accepted an incomplete control file: %+v", info)
		}
		if err != nil && !errors.Is(err, ErrBadPackage) {
			t.Fatalf("error %v is not ErrBadPackage", err)
		}
	})
}

func TestCompareDebVersions(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0},
		{"1.0", "1.1", -1},
		{"1.10", "1.9", 1},
		{"1.0~rc1", "1.0", -1},
		{"1.0", "1.0+git1", -1},
		{"1.0-1", "1.0-2", -1},
		{"1:0.1", "2.0", 1},
		{"0.0.0-dev", "0.1.0", -1},
		{"1.0a", "1.0", 1},
		{"1.0~~", "1.0~", -1},
		{"1.001", "1.1", 0},
		{"2.0.0+3+gabc", "2.0.0", 1},
		{"1.2.3", "1.2.3-0", 0},
	}
	for _, c := range cases {
		got, err := CompareDebVersions(c.a, c.b)
		if err != nil {
			t.Fatalf("%s vs %s: %v", c.a, c.b, err)
		}
		if got != c.want {
			t.Errorf("compare(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
		if back, _ := CompareDebVersions(c.b, c.a); back != -c.want {
			t.Errorf("compare(%q, %q) = %d, not antisymmetric", c.b, c.a, back)
		}
	}
	for _, bad := range []string{"", "a1.0", "x:1.0", "1.0-", "1 0", "1.0_2"} {
		if _, err := CompareDebVersions(bad, "1.0"); err == nil {
			t.Errorf("version %q accepted", bad)
		}
	}
}

// updateFixture is an appliance data dir with a fresh update key pair.
type updateFixture struct {
	cfg  Config
	priv minisign.PrivateKey
	u    *Updater
}

func newUpdateFixture(t *testing.T) *updateFixture {
	t.Helper()
	pub, priv, err := minisign.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "update.pub")
	text, _ := pub.MarshalText()
	if err := os.WriteFile(keyFile, text, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.Update.PublicKeyFile = keyFile
	u := NewUpdater(cfg, WithUpdateArch("arm64"), WithInstalledVersion("1.2.0-1"))
	return &updateFixture{cfg: cfg, priv: priv, u: u}
}

func (f *updateFixture) signed(deb []byte) ([]byte, []byte) {
	return deb, minisign.Sign(f.priv, deb)
}

// keepInstalled stores a package as the last successful update, signed by
// the update key unless sig is given.
func (f *updateFixture) keepInstalled(t *testing.T, deb, sig []byte) {
	t.Helper()
	if sig == nil {
		sig = minisign.Sign(f.priv, deb)
	}
	os.MkdirAll(f.cfg.UpdatesDir(), 0o700)
	if err := os.WriteFile(filepath.Join(f.cfg.UpdatesDir(), installedDebFile), deb, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.cfg.UpdatesDir(), installedDebFile+".minisig"), sig, 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *updateFixture) leftovers(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(f.cfg.UpdatesDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestUpdateRefusals(t *testing.T) {
	f := newUpdateFixture(t)
	_, otherPriv, _ := minisign.GenerateKey(rand.Reader)
	good := makeDeb(t, control("flownexus", "1.3.0-1", "arm64"), ".xz")
	goodSig := minisign.Sign(f.priv, good)
	tampered := bytes.Clone(good)
	tampered[len(tampered)-3] ^= 0xff

	cases := []struct {
		name string
		deb  []byte
		sig  []byte
		want error
	}{
		{"signed by another key", good, minisign.Sign(otherPriv, good), ErrUpdateSignature},
		{"signature of another file", tampered, goodSig, ErrUpdateSignature},
		{"garbage signature", good, []byte("untrusted comment: x\nnot base64\n"), ErrUpdateSignature},
		{"no signature", good, nil, ErrUpdateSignature},
		{"wrong architecture", makeDeb(t, control("flownexus", "1.3.0-1", "amd64"), ".gz"), nil, ErrUpdateArch},
		{"older version", makeDeb(t, control("flownexus", "1.1.9-1", "arm64"), ".gz"), nil, ErrUpdateNotNewer},
		{"same version", makeDeb(t, control("flownexus", "1.2.0-1", "arm64"), ".gz"), nil, ErrUpdateNotNewer},
		{"pre-release of the same version", makeDeb(t, control("flownexus", "1.2.0~rc1-1", "arm64"), ".gz"), nil, ErrUpdateNotNewer},
		{"another package", makeDeb(t, control("openssh-server", "9.9", "arm64"), ".gz"), nil, ErrUpdatePackage},
		{"signed non-package", []byte("#!/bin/sh\nrm -rf /\n"), nil, ErrUpdatePackage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sig := c.sig
			if sig == nil && c.want != ErrUpdateSignature {
				sig = minisign.Sign(f.priv, c.deb)
			}
			_, err := f.u.Submit(context.Background(), bytes.NewReader(c.deb), sig)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if left := f.leftovers(t); len(left) != 0 {
				t.Errorf("a refused package left %v behind", left)
			}
		})
	}
}

func TestUpdateMissingPublicKey(t *testing.T) {
	f := newUpdateFixture(t)
	f.cfg.Update.PublicKeyFile = filepath.Join(t.TempDir(), "none.pub")
	u := NewUpdater(f.cfg, WithUpdateArch("arm64"), WithInstalledVersion("1.0"))
	deb, sig := f.signed(makeDeb(t, control("flownexus", "2.0", "arm64"), ".gz"))
	_, err := u.Submit(context.Background(), bytes.NewReader(deb), sig)
	if !errors.Is(err, ErrUpdateNoKey) || !strings.Contains(err.Error(), f.cfg.Update.PublicKeyFile) || !strings.Contains(err.Error(), "install") {
		t.Fatalf("err = %v, want ErrUpdateNoKey naming the file and how to install it", err)
	}
	// The web UI shows it as 503 with the same words, never a 500.
	if werr := httpError(err); !errors.Is(werr, webui.ErrUnavailable) {
		t.Fatalf("httpError(%v) = %v, want webui.ErrUnavailable", err, werr)
	}
}

func TestUpdateSubmitQueuesForHelper(t *testing.T) {
	f := newUpdateFixture(t)
	deb, sig := f.signed(makeDeb(t, control("flownexus", "1:1.3.0-1", "arm64"), ".zst"))
	info, err := f.u.Submit(context.Background(), bytes.NewReader(deb), sig)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != "1:1.3.0-1" {
		t.Errorf("info %+v", info)
	}
	st, err := f.u.Status()
	if err != nil || st.State != UpdatePending || st.Version != "1:1.3.0-1" || st.Previous != "1.2.0-1" {
		t.Errorf("status %+v, %v", st, err)
	}
	for _, name := range []string{"request.json", "flownexus_1%3a1.3.0-1_arm64.deb", "flownexus_1%3a1.3.0-1_arm64.deb.minisig"} {
		if _, err := os.Stat(filepath.Join(f.cfg.UpdatesDir(), name)); err != nil {
			t.Errorf("missing %s: %v", name, err)
		}
	}
	// A second upload while the first is pending is refused.
	deb2, sig2 := f.signed(makeDeb(t, control("flownexus", "1.4.0", "arm64"), ".gz"))
	if _, err := f.u.Submit(context.Background(), bytes.NewReader(deb2), sig2); !errors.Is(err, ErrUpdateBusy) {
		t.Errorf("second submit: %v, want ErrUpdateBusy", err)
	}
}

// fakeInstaller records the packages the helper installs and answers
// health checks from a list.
type fakeInstaller struct {
	installed []string
	health    []error
}

func (fi *fakeInstaller) install(_ context.Context, deb string) error {
	b, err := os.ReadFile(deb)
	if err != nil {
		return err
	}
	info, err := ReadPackageInfo(bytes.NewReader(b))
	if err != nil {
		return err
	}
	fi.installed = append(fi.installed, info.Version)
	return nil
}

func (fi *fakeInstaller) healthy(context.Context) error {
	if len(fi.health) == 0 {
		return errors.New("no health answer left")
	}
	err := fi.health[0]
	fi.health = fi.health[1:]
	return err
}

func TestUpdateHelper(t *testing.T) {
	unhealthy := errors.New("/healthz: connection refused")
	cases := []struct {
		name          string
		previous      bool
		health        []error
		wantInstalled []string
		wantState     string
		wantErr       bool
	}{
		{"healthy", true, []error{nil}, []string{"1.3.0"}, UpdateSucceeded, false},
		{"unhealthy rolls back", true, []error{unhealthy, nil}, []string{"1.3.0", "1.2.0-1"}, UpdateRolledBack, true},
		{"unhealthy without previous package", false, []error{unhealthy}, []string{"1.3.0"}, UpdateFailed, true},
		{"rollback also unhealthy", true, []error{unhealthy, unhealthy}, []string{"1.3.0", "1.2.0-1"}, UpdateFailed, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newUpdateFixture(t)
			if c.previous {
				f.keepInstalled(t, makeDeb(t, control("flownexus", "1.2.0-1", "arm64"), ".gz"), nil)
			}
			deb, sig := f.signed(makeDeb(t, control("flownexus", "1.3.0", "arm64"), ".gz"))
			if _, err := f.u.Submit(context.Background(), bytes.NewReader(deb), sig); err != nil {
				t.Fatal(err)
			}
			fi := &fakeInstaller{health: c.health}
			err := RunUpdateHelper(context.Background(), f.cfg, f.u, HelperOptions{Install: fi.install, Healthy: fi.healthy})
			if (err != nil) != c.wantErr {
				t.Errorf("err = %v, want error %v", err, c.wantErr)
			}
			if fmt.Sprint(fi.installed) != fmt.Sprint(c.wantInstalled) {
				t.Errorf("installed %v, want %v", fi.installed, c.wantInstalled)
			}
			st, _ := f.u.Status()
			if st.State != c.wantState {
				t.Errorf("state %q (%s), want %q", st.State, st.Error, c.wantState)
			}
			if _, err := os.Stat(filepath.Join(f.cfg.UpdatesDir(), updateRequestFile)); !errors.Is(err, fs.ErrNotExist) {
				t.Error("request left behind: the path unit would start the helper again")
			}
			if c.wantState == UpdateSucceeded {
				b, _ := os.ReadFile(filepath.Join(f.cfg.UpdatesDir(), installedDebFile))
				if info, _ := ReadPackageInfo(bytes.NewReader(b)); info.Version != "1.3.0" {
					t.Errorf("kept package is %q, want the new one for the next rollback", info.Version)
				}
			}
		})
	}
}

// TestUpdateHelperReverifies: a package swapped in the updates dir after the
// service verified it (the service's user can write there) is not installed.
func TestUpdateHelperReverifies(t *testing.T) {
	f := newUpdateFixture(t)
	deb, sig := f.signed(makeDeb(t, control("flownexus", "1.3.0", "arm64"), ".gz"))
	if _, err := f.u.Submit(context.Background(), bytes.NewReader(deb), sig); err != nil {
		t.Fatal(err)
	}
	evil := makeDeb(t, control("flownexus", "1.3.0", "arm64"), ".xz")
	if err := os.WriteFile(filepath.Join(f.cfg.UpdatesDir(), "flownexus_1.3.0_arm64.deb"), evil, 0o644); err != nil {
		t.Fatal(err)
	}
	fi := &fakeInstaller{health: []error{nil}}
	err := RunUpdateHelper(context.Background(), f.cfg, f.u, HelperOptions{Install: fi.install, Healthy: fi.healthy})
	if !errors.Is(err, ErrUpdateSignature) {
		t.Fatalf("err = %v, want ErrUpdateSignature", err)
	}
	if len(fi.installed) != 0 {
		t.Fatalf("installed %v", fi.installed)
	}
	if st, _ := f.u.Status(); st.State != UpdateFailed {
		t.Errorf("state %q", st.State)
	}
}

// TestUpdateHelperRefusesUnsignedRollback: the service's user can write the
// kept package; an unsigned one is never installed, even to roll back.
func TestUpdateHelperRefusesUnsignedRollback(t *testing.T) {
	f := newUpdateFixture(t)
	_, otherPriv, _ := minisign.GenerateKey(rand.Reader)
	evil := makeDeb(t, control("flownexus", "1.2.0-1", "arm64"), ".gz")
	f.keepInstalled(t, evil, minisign.Sign(otherPriv, evil))
	deb, sig := f.signed(makeDeb(t, control("flownexus", "1.3.0", "arm64"), ".gz"))
	if _, err := f.u.Submit(context.Background(), bytes.NewReader(deb), sig); err != nil {
		t.Fatal(err)
	}
	fi := &fakeInstaller{health: []error{errors.New("unhealthy")}}
	if err := RunUpdateHelper(context.Background(), f.cfg, f.u, HelperOptions{Install: fi.install, Healthy: fi.healthy}); err == nil {
		t.Fatal("no error")
	}
	if fmt.Sprint(fi.installed) != "[1.3.0]" {
		t.Fatalf("installed %v; the unsigned rollback package must not be installed", fi.installed)
	}
	if st, _ := f.u.Status(); st.State != UpdateFailed || !strings.Contains(st.Error, "no previous signed package") {
		t.Errorf("status %+v", st)
	}
}

func TestUpdateHelperMalformedRequest(t *testing.T) {
	f := newUpdateFixture(t)
	os.MkdirAll(f.cfg.UpdatesDir(), 0o700)
	os.WriteFile(filepath.Join(f.cfg.UpdatesDir(), updateRequestFile), []byte(`{"package":"../../etc/shadow"}`), 0o644)
	fi := &fakeInstaller{}
	if err := RunUpdateHelper(context.Background(), f.cfg, f.u, HelperOptions{Install: fi.install, Healthy: fi.healthy}); !errors.Is(err, ErrUpdatePackage) {
		t.Fatalf("err = %v", err)
	}
	if len(fi.installed) != 0 {
		t.Fatal("installed something")
	}
}

func TestWaitHealthy(t *testing.T) {
	var ok atomic.Bool
	ok.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || !ok.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"status":"ok"}`))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	cfg := DefaultConfig()
	cfg.Listen.HTTP = ":" + port
	if err := waitHealthy(context.Background(), cfg, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ok.Store(false)
	if err := waitHealthy(context.Background(), cfg, 1500*time.Millisecond); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err = %v, want a 503 failure", err)
	}
}

func FuzzCompareDebVersions(f *testing.F) {
	f.Add("1.0", "1.0~rc1")
	f.Add("1:2.3-4", "2.3-4")
	f.Add("0.0.0+git451d539", "0.1.0")
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, errA := CompareDebVersions(a, b)
		ba, errB := CompareDebVersions(b, a)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("errors differ by order: %v / %v", errA, errB)
		}
		if errA == nil && ab != -ba {
			t.Fatalf("compare(%q,%q)=%d but compare(%q,%q)=%d", a, b, ab, b, a, ba)
		}
	})
}

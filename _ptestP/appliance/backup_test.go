package appliance

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
	"github.com/flownexus/flownexus/store"
	"github.com/flownexus/flownexus/webui"
)

// backupFixture is a data dir with a running store holding a device with a
// PSK credential, a user, telemetry history, a CA key and a firmware image.
type backupFixture struct {
	cfg      Config
	db       *store.DB
	t0       time.Time
	readings int
}

func newBackupFixture(t *testing.T) *backupFixture {
	t.Helper()
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	sc := store.DefaultConfig()
	sc.Path = cfg.DatabasePath()
	db, err := store.Open(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	ran := make(chan struct{})
	go func() { db.Run(runCtx); close(ran) }()
	t.Cleanup(func() { cancel(); <-ran; db.Close() })

	if _, err := db.ProvisionEndpoint(ctx, store.Credential{Endpoint: "urn:imei:356938035643809", Mode: store.ModePSK,
		PSKIdentity: "urn:imei:356938035643809", PSKKey: []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}}); err != nil {
		t.Fatal(err)
	}
	hash, err := webui.HashPassword("restore me please")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateUser(ctx, "tech", hash, store.RoleOperator); err != nil {
		t.Fatal(err)
	}
	f := &backupFixture{cfg: cfg, db: db, t0: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC), readings: 50}
	var recs []lwm2m.Record
	for i := range f.readings {
		recs = append(recs, lwm2m.Record{Path: lwm2m.MustParsePath("/3303/0/5700"), Value: lwm2m.Float(20 + float64(i)/10), Time: f.t0.Add(time.Duration(i) * time.Minute)})
	}
	if err := db.IngestWait(ctx, store.Batch{Endpoint: "urn:imei:356938035643809", Received: f.t0, Records: recs}); err != nil {
		t.Fatal(err)
	}
	if err := db.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(cfg.PKIDir(), "ca.key"), "-----BEGIN EC PRIVATE KEY-----\nnot really\n")
	mustWrite(t, filepath.Join(cfg.PKIDir(), "ca.crt"), "-----BEGIN CERTIFICATE-----\n")
	mustWrite(t, filepath.Join(cfg.FirmwareDir(), "ab", "abcdef.bin"), strings.Repeat("\x7fELF firmware ", 4096))
	return f
}

func mustWrite(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *backupFixture) archive(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := NewBackups(f.cfg, f.db, nil).Backup(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkRestored opens the restored data dir and checks that devices,
// credentials, users, history, the PKI and firmware came back.
func (f *backupFixture) checkRestored(t *testing.T, dataDir string) {
	t.Helper()
	ctx := context.Background()
	sc := store.DefaultConfig()
	sc.Path = filepath.Join(dataDir, databaseFile)
	db, err := store.Open(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Endpoint(ctx, "urn:imei:356938035643809"); err != nil {
		t.Errorf("device: %v", err)
	}
	c, err := db.Credential(ctx, "urn:imei:356938035643809")
	if err != nil || c.Mode != store.ModePSK || !bytes.Equal(c.PSKKey, []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}) {
		t.Errorf("credential %+v, %v", c, err)
	}
	u, err := db.UserByName(ctx, "tech")
	if err != nil || u.Role != store.RoleOperator || !webui.CheckPassword(u.PasswordHash, "restore me please") {
		t.Errorf("user %+v, %v", u, err)
	}
	pts, err := db.Readings(ctx, "urn:imei:356938035643809", lwm2m.MustParsePath("/3303/0/5700"), f.t0.Add(-time.Hour), f.t0.Add(24*time.Hour), 0)
	if err != nil || len(pts) != f.readings {
		t.Errorf("history: %d readings, want %d (%v)", len(pts), f.readings, err)
	}
	for _, p := range []string{"pki/ca.key", "pki/ca.crt", "firmware/ab/abcdef.bin"} {
		want, _ := os.ReadFile(filepath.Join(f.cfg.DataDir, p))
		got, err := os.ReadFile(filepath.Join(dataDir, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s not restored: %v", p, err)
		}
		if st, err := os.Stat(filepath.Join(dataDir, p)); err == nil && st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, st.Mode().Perm())
		}
	}
}

func TestBackupThenRestoreIntoEmptyDataDir(t *testing.T) {
	f := newBackupFixture(t)
	archive := f.archive(t)
	cfg := DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "fresh") // not even created yet
	if err := RestoreDataDir(context.Background(), cfg, bytes.NewReader(archive), false); err != nil {
		t.Fatal(err)
	}
	f.checkRestored(t, cfg.DataDir)
	ents, _ := os.ReadDir(cfg.DataDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("restore left %s behind", e.Name())
		}
	}
}

func TestBackupManifest(t *testing.T) {
	f := newBackupFixture(t)
	m, names := readArchive(t, f.archive(t))
	if m.Format != backupFormat || m.Version != Version || m.Created.IsZero() {
		t.Errorf("manifest %+v", m)
	}
	if names[0] != manifestName {
		t.Errorf("first member %q, want the manifest", names[0])
	}
	want := []string{"flownexus.db", "pki/ca.crt", "pki/ca.key", "firmware/ab/abcdef.bin"}
	got := map[string]bool{}
	for _, e := range m.Files {
		got[e.Path] = true
		if len(e.SHA256) != 64 {
			t.Errorf("%s: sha256 %q", e.Path, e.SHA256)
		}
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("manifest lacks %s: %+v", w, m.Files)
		}
	}
}

func readArchive(t *testing.T, b []byte) (Manifest, []string) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var m Manifest
	var names []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Name == manifestName {
			json.NewDecoder(tr).Decode(&m)
		}
	}
	return m, names
}

// rewriteArchive rebuilds an archive with each member passed through edit,
// which may change the header or body, or drop the member (nil header).
func rewriteArchive(t *testing.T, b []byte, edit func(h *tar.Header, body []byte) (*tar.Header, []byte)) []byte {
	t.Helper()
	zr, _ := gzip.NewReader(bytes.NewReader(b))
	tr := tar.NewReader(zr)
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		body, _ := io.ReadAll(tr)
		h, body = edit(h, body)
		if h == nil {
			continue
		}
		h.Size = int64(len(body))
		tw.WriteHeader(h)
		tw.Write(body)
	}
	tw.Close()
	zw.Close()
	return out.Bytes()
}

func TestRestoreRefusals(t *testing.T) {
	f := newBackupFixture(t)
	good := f.archive(t)
	editManifest := func(fn func(*Manifest)) []byte {
		return rewriteArchive(t, good, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == manifestName {
				var m Manifest
				json.Unmarshal(body, &m)
				fn(&m)
				body, _ = json.Marshal(m)
			}
			return h, body
		})
	}
	cases := map[string][]byte{
		"not gzip":  []byte("PK\x03\x04"),
		"truncated": good[:len(good)/2],
		"tampered firmware": rewriteArchive(t, good, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if strings.HasPrefix(h.Name, "firmware/") {
				body = bytes.Clone(body)
				body[10] ^= 1
			}
			return h, body
		}),
		"missing member": rewriteArchive(t, good, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == "pki/ca.key" {
				return nil, nil
			}
			return h, body
		}),
		"extra member": rewriteArchive(t, good, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == "pki/ca.crt" {
				h.Name = "pki/evil.crt"
			}
			return h, body
		}),
		"manifest not first": rewriteArchive(t, good, func(h *tar.Header, body []byte) (*tar.Header, []byte) {
			if h.Name == manifestName {
				h.Name = "MANIFEST"
			}
			return h, body
		}),
		"path traversal": editManifest(func(m *Manifest) { m.Files = append(m.Files, ManifestEntry{Path: "../../etc/cron.d/x"}) }),
		"absolute path":  editManifest(func(m *Manifest) { m.Files = append(m.Files, ManifestEntry{Path: "/etc/passwd"}) }),
		"outside parts":  editManifest(func(m *Manifest) { m.Files = append(m.Files, ManifestEntry{Path: "updates/request.json"}) }),
		"future format":  editManifest(func(m *Manifest) { m.Format = 99 }),
		"no database": editManifest(func(m *Manifest) {
			m.Files = m.Files[1:]
		}),
	}
	for name, archive := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.DataDir = t.TempDir()
			err := RestoreDataDir(context.Background(), cfg, bytes.NewReader(archive), false)
			if !errors.Is(err, ErrBackupInvalid) {
				t.Fatalf("err = %v, want ErrBackupInvalid", err)
			}
			if ents, _ := os.ReadDir(cfg.DataDir); len(ents) != 0 {
				t.Errorf("a refused restore left %v in the data dir", ents)
			}
		})
	}
}

func TestRestoreNonEmptyDataDir(t *testing.T) {
	f := newBackupFixture(t)
	archive := f.archive(t)
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	mustWrite(t, filepath.Join(cfg.DataDir, databaseFile), "old database")
	mustWrite(t, filepath.Join(cfg.DataDir, databaseFile+"-wal"), "old wal that must not be replayed")
	err := RestoreDataDir(context.Background(), cfg, bytes.NewReader(archive), false)
	if !errors.Is(err, ErrDataDirNotEmpty) {
		t.Fatalf("err = %v, want ErrDataDirNotEmpty", err)
	}
	if b, _ := os.ReadFile(filepath.Join(cfg.DataDir, databaseFile)); string(b) != "old database" {
		t.Fatal("refused restore touched the database")
	}
	if err := RestoreDataDir(context.Background(), cfg, bytes.NewReader(archive), true); err != nil {
		t.Fatalf("forced restore: %v", err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, databaseFile+"-wal")); !errors.Is(err, os.ErrNotExist) {
		t.Error("the old -wal file was left beside the restored database")
	}
	f.checkRestored(t, cfg.DataDir)
	matches, _ := filepath.Glob(filepath.Join(cfg.DataDir, ".pre-restore-*", databaseFile))
	if len(matches) != 1 {
		t.Errorf("the replaced database was not kept aside: %v", matches)
	}
}

// TestRestoreStagedFromWebUI: Backups.Restore (the web UI's) verifies and
// stages; ApplyPendingRestore at the next start swaps it in.
func TestRestoreStagedFromWebUI(t *testing.T) {
	f := newBackupFixture(t)
	archive := f.archive(t)
	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	mustWrite(t, filepath.Join(cfg.DataDir, databaseFile), "running database")
	b := NewBackups(cfg, nil, nil)
	if err := b.Restore(context.Background(), bytes.NewReader(archive[:len(archive)-40])); !errors.Is(err, ErrBackupInvalid) {
		t.Fatalf("truncated upload: %v", err)
	}
	if applied, err := ApplyPendingRestore(cfg, nil); applied || err != nil {
		t.Fatalf("a refused upload was staged: %v %v", applied, err)
	}
	if err := b.Restore(context.Background(), bytes.NewReader(archive)); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(cfg.DataDir, databaseFile)); string(got) != "running database" {
		t.Fatal("Restore replaced the database under the running appliance")
	}
	applied, err := ApplyPendingRestore(cfg, nil)
	if err != nil || !applied {
		t.Fatalf("apply: %v %v", applied, err)
	}
	f.checkRestored(t, cfg.DataDir)
	if _, err := os.Stat(filepath.Join(cfg.DataDir, pendingRestoreDir)); !errors.Is(err, os.ErrNotExist) {
		t.Error("staged restore left behind")
	}
}

func TestValidArchivePath(t *testing.T) {
	for p, want := range map[string]bool{
		"flownexus.db": true, "pki/ca.key": true, "firmware/a/b.bin": true,
		"": false, "pki": false, "pki/": false, "/pki/x": false, "pki/../x": false, "../x": false,
		"flownexus.db/x": false, "updates/x": false, "pki\\x": false, "./pki/x": false,
	} {
		if got := validArchivePath(p); got != want {
			t.Errorf("validArchivePath(%q) = %v, want %v", p, got, want)
		}
	}
}

// smallArchive is a valid archive made without a store, for fuzz seeds.
func smallArchive(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	files := []archiveFile{}
	for name, body := range map[string]string{databaseFile: "SQLite format 3\x00", "pki/ca.key": "key", "firmware/x.bin": "fw"} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte(body), 0o600)
		files = append(files, archiveFile{name: name, src: p})
	}
	var buf bytes.Buffer
	if err := writeArchive(context.Background(), &buf, files, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func FuzzExtractArchive(f *testing.F) {
	good := smallArchive(f)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0x1f, 0x8b})
	f.Fuzz(func(t *testing.T, b []byte) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "stage")
		err := extractArchive(context.Background(), bytes.NewReader(b), dir)
		if err != nil && !errors.Is(err, ErrBackupInvalid) && !errors.Is(err, os.ErrExist) {
			t.Fatalf("error %v is not ErrBackupInvalid", err)
		}
		// Nothing is ever written beside the staging dir.
		ents, _ := os.ReadDir(parent)
		for _, e := range ents {
			if e.Name() != "stage" {
				t.Fatalf("extract wrote %s outside its dir", e.Name())
			}
		}
	})
}

package appliance

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/flownexus/flownexus/store"
)

// Backup and restore errors.
var (
	// ErrBackupInvalid: the archive is not a FlowNexus backup, is
	// truncated, or a file does not match the manifest.
	ErrBackupInvalid = errors.New("invalid backup archive")
	// ErrDataDirNotEmpty: restore refuses to overwrite a data dir that
	// holds data unless forced.
	ErrDataDirNotEmpty = errors.New("data dir is not empty")
)

// backupFormat is the manifest's format number; restore refuses others.
const backupFormat = 1

const manifestName = "manifest.json"

// pendingRestoreDir holds a restore verified by the web UI, applied at the
// next start before the store is opened.
const pendingRestoreDir = "restore-pending"

// Manifest describes a backup archive; it is the archive's first member.
type Manifest struct {
	Format  int             `json:"format"`
	Version string          `json:"version"`
	Created time.Time       `json:"created"`
	Files   []ManifestEntry `json:"files"`
}

// ManifestEntry is one file of the archive, by its path relative to the
// data dir.
type ManifestEntry struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Backups makes and restores backup archives for a running appliance; the
// web UI's System page calls Backup and Restore.
type Backups struct {
	cfg Config
	db  *store.DB
	log *slog.Logger
	now func() time.Time
}

// NewBackups returns Backups for cfg's data dir and the open db.
func NewBackups(cfg Config, db *store.DB, log *slog.Logger) *Backups {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Backups{cfg: cfg, db: db, log: log.With("component", "backup"), now: time.Now}
}

// Backup writes one tar.gz archive to w: a manifest (version, time, SHA-256
// of each file), a consistent online copy of the database, the PKI dir and
// the firmware files.
func (b *Backups) Backup(ctx context.Context, w io.Writer) error {
	tmp, release, err := store.MakeWorkDir(b.cfg.DataDir, store.BackupWorkPrefix)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer release()
	snap := filepath.Join(tmp, databaseFile)
	// SQLite's online backup API (store.BackupTo) copies a consistent
	// snapshot while the ingestion writer goes on.
	if err := b.db.BackupTo(ctx, snap); err != nil {
		return fmt.Errorf("backup: database: %w", err)
	}
	files := []archiveFile{{name: databaseFile, src: snap}}
	for _, dir := range []string{pkiDir, firmwareDir} {
		more, err := walkFiles(b.cfg.DataDir, dir)
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		files = append(files, more...)
	}
	if err := writeArchive(ctx, w, files, b.now()); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	b.log.Info("backup written", "files", len(files))
	return nil
}

// Restore verifies an archive uploaded to a running appliance and stages it
// in the data dir; it replaces the data at the next start (the caller
// restarts the service), because the open database cannot be swapped under
// the running components.
func (b *Backups) Restore(ctx context.Context, r io.Reader) error {
	stage := filepath.Join(b.cfg.DataDir, pendingRestoreDir)
	if err := os.RemoveAll(stage); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := extractArchive(ctx, r, stage); err != nil {
		os.RemoveAll(stage)
		return fmt.Errorf("restore: %w", err)
	}
	b.log.Info("restore staged; it is applied at the next start")
	return nil
}

// ApplyPendingRestore swaps a restore staged by Backups.Restore into the
// data dir. The appliance calls it at start-up before it opens the store;
// it reports whether there was one.
func ApplyPendingRestore(cfg Config, log *slog.Logger) (bool, error) {
	stage := filepath.Join(cfg.DataDir, pendingRestoreDir)
	if _, err := os.Stat(stage); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err := swapIn(cfg.DataDir, stage, time.Now()); err != nil {
		return false, fmt.Errorf("restore: %w", err)
	}
	if log != nil {
		log.Info("restored the staged backup", "data_dir", cfg.DataDir)
	}
	return true, nil
}

// BackupDataDir is `flownexus backup`: it opens the data dir's database
// (alongside a running service, thanks to WAL) and writes an archive to w.
func BackupDataDir(ctx context.Context, cfg Config, w io.Writer) error {
	if _, err := os.Stat(cfg.DatabasePath()); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	db, err := openDataDirStore(ctx, cfg)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer db.Close()
	return NewBackups(cfg, db, nil).Backup(ctx, w)
}

// RestoreDataDir is `flownexus restore`: it verifies the archive and
// restores it into cfg's data dir, which must be empty unless force is set
// (then the replaced files are kept in a .pre-restore-* dir). The service
// must be stopped. Run as root, the restored files get the data dir's owner.
func RestoreDataDir(ctx context.Context, cfg Config, r io.Reader, force bool) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if !force {
		ents, err := os.ReadDir(cfg.DataDir)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		for _, e := range ents {
			if e.Name() != "lost+found" {
				return fmt.Errorf("restore: %s: %w (found %s; use --force to replace it)", cfg.DataDir, ErrDataDirNotEmpty, e.Name())
			}
		}
	}
	stage, err := os.MkdirTemp(cfg.DataDir, ".restore-")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer os.RemoveAll(stage)
	if err := extractArchive(ctx, r, stage); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := swapIn(cfg.DataDir, stage, time.Now()); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return chownLikeDir(cfg.DataDir, []string{databaseFile, pkiDir, firmwareDir})
}

type archiveFile struct {
	name string // slash path relative to the data dir
	src  string
}

// walkFiles lists the regular files under dataDir/dir; a missing dir is
// empty (a fresh appliance has no firmware yet).
func walkFiles(dataDir, dir string) ([]archiveFile, error) {
	var out []archiveFile
	root := filepath.Join(dataDir, dir)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == root {
				return fs.SkipDir
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dataDir, p)
		if err != nil {
			return err
		}
		out = append(out, archiveFile{name: filepath.ToSlash(rel), src: p})
		return nil
	})
	return out, err
}

func hashFile(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// writeArchive writes the manifest first, so that a restore knows every
// file and its hash before it reads any, then the files.
func writeArchive(ctx context.Context, w io.Writer, files []archiveFile, now time.Time) error {
	m := Manifest{Format: backupFormat, Version: Version, Created: now.UTC()}
	for _, f := range files {
		size, sum, err := hashFile(f.src)
		if err != nil {
			return err
		}
		m.Files = append(m.Files, ManifestEntry{Path: f.name, Size: size, SHA256: sum})
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	hdr := func(name string, size int64, mode int64) *tar.Header {
		return &tar.Header{Name: name, Size: size, Mode: mode, ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(manifestName, int64(len(mb)), 0o600)); err != nil {
		return err
	}
	if _, err := tw.Write(mb); err != nil {
		return err
	}
	for i, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := copyIntoTar(tw, hdr(f.name, m.Files[i].Size, 0o600), f.src, m.Files[i].SHA256); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

// copyIntoTar copies a file whose size and hash are in the manifest; a file
// that changed since it was hashed (a firmware upload) fails the backup
// rather than produce an archive that would not restore.
func copyIntoTar(tw *tar.Writer, h *tar.Header, src, sum string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	hs := sha256.New()
	n, err := io.Copy(io.MultiWriter(tw, hs), io.LimitReader(f, h.Size))
	if err != nil {
		return err
	}
	if n != h.Size || hex.EncodeToString(hs.Sum(nil)) != sum {
		return fmt.Errorf("%s changed during the backup; try again", h.Name)
	}
	return nil
}

// validArchivePath accepts clean relative paths inside the backed-up parts
// of the data dir, so an archive cannot write anywhere else.
func validArchivePath(p string) bool {
	if p == "" || path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "../") || p == ".." || strings.Contains(p, "\\") {
		return false
	}
	top, _, _ := strings.Cut(p, "/")
	switch top {
	case databaseFile:
		return p == databaseFile
	case pkiDir, firmwareDir:
		return p != top
	}
	return false
}

// extractArchive reads an archive into dir (created), checking every file
// against the manifest; on any mismatch it fails and dir holds no usable
// restore.
func extractArchive(ctx context.Context, r io.Reader, dir string) error {
	zr, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("%w: not gzip: %v", ErrBackupInvalid, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil || h.Name != manifestName {
		return fmt.Errorf("%w: the manifest must come first", ErrBackupInvalid)
	}
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(tr, 16<<20)).Decode(&m); err != nil {
		return fmt.Errorf("%w: manifest: %v", ErrBackupInvalid, err)
	}
	if m.Format != backupFormat {
		return fmt.Errorf("%w: manifest format %d, this version reads %d", ErrBackupInvalid, m.Format, backupFormat)
	}
	want := map[string]ManifestEntry{}
	for _, e := range m.Files {
		if !validArchivePath(e.Path) {
			return fmt.Errorf("%w: manifest names %q", ErrBackupInvalid, e.Path)
		}
		if _, dup := want[e.Path]; dup {
			return fmt.Errorf("%w: manifest names %q twice", ErrBackupInvalid, e.Path)
		}
		want[e.Path] = e
	}
	if _, ok := want[databaseFile]; !ok {
		return fmt.Errorf("%w: no database in the archive", ErrBackupInvalid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	seen := map[string]bool{}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBackupInvalid, err)
		}
		e, ok := want[h.Name]
		if !ok || h.Typeflag != tar.TypeReg || seen[h.Name] {
			return fmt.Errorf("%w: unexpected member %q", ErrBackupInvalid, h.Name)
		}
		seen[h.Name] = true
		if h.Size != e.Size {
			return fmt.Errorf("%w: %s is %d bytes, the manifest says %d", ErrBackupInvalid, h.Name, h.Size, e.Size)
		}
		dst := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		hs := sha256.New()
		_, err = io.Copy(io.MultiWriter(f, hs), tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrBackupInvalid, h.Name, err)
		}
		if got := hex.EncodeToString(hs.Sum(nil)); got != e.SHA256 {
			return fmt.Errorf("%w: %s: sha256 %s, the manifest says %s", ErrBackupInvalid, h.Name, got, e.SHA256)
		}
	}
	var missing []string
	for p := range want {
		if !seen[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("%w: truncated: missing %s", ErrBackupInvalid, strings.Join(missing, ", "))
	}
	return nil
}

// swapIn moves the staged database, pki and firmware into dataDir. What it
// replaces (including the old database's -wal and -shm files, which SQLite
// would otherwise replay over the restored database) goes to a
// .pre-restore-<time> dir.
func swapIn(dataDir, stage string, now time.Time) error {
	aside := filepath.Join(dataDir, ".pre-restore-"+now.UTC().Format("20060102T150405Z"))
	movedAside := false
	for _, name := range []string{databaseFile, databaseFile + "-wal", databaseFile + "-shm", databaseFile + "-journal", pkiDir, firmwareDir} {
		old := filepath.Join(dataDir, name)
		if _, err := os.Lstat(old); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.MkdirAll(aside, 0o700); err != nil {
			return err
		}
		if err := os.Rename(old, filepath.Join(aside, name)); err != nil {
			return err
		}
		movedAside = true
	}
	for _, name := range []string{databaseFile, pkiDir, firmwareDir} {
		src := filepath.Join(stage, name)
		if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.Rename(src, filepath.Join(dataDir, name)); err != nil {
			return err
		}
	}
	if !movedAside {
		os.Remove(aside)
	}
	return os.RemoveAll(stage)
}

// chownLikeDir gives the restored files the data dir's owner when running as
// root (a restore by an admin for the flownexus service user).
func chownLikeDir(dataDir string, names []string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	st, err := os.Stat(dataDir)
	if err != nil {
		return err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok || sys.Uid == 0 {
		return nil
	}
	uid, gid := int(sys.Uid), int(sys.Gid)
	for _, n := range names {
		err := filepath.WalkDir(filepath.Join(dataDir, n), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			return os.Lchown(p, uid, gid)
		})
		if err != nil {
			return fmt.Errorf("restore: chown: %w", err)
		}
	}
	return nil
}

package firmware

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/flownexus/flownexus/store"
)

// Errors of the library. They wrap store's sentinels where one fits, so
// that the web UI maps them to status codes without knowing this package.
var (
	// ErrTooLarge: the upload passed the size limit.
	ErrTooLarge = errors.New("firmware: image too large")
	// ErrNotImage: the upload is empty or text (an HTML error page, a
	// README), not a firmware image.
	ErrNotImage = fmt.Errorf("%w: not a firmware image", store.ErrInvalid)
)

// DefaultMaxSize bounds an image (64 MiB) unless configured otherwise.
const DefaultMaxSize = 64 << 20

const tempPrefix = "upload-"

// Library is the firmware image library: files named by their SHA-256
// under one directory, metadata in the store. A file is in place before
// its row is written and removed when the row cannot be, and Open sweeps
// what an interrupted upload left, so files and rows never disagree.
type Library struct {
	db      *store.DB
	dir     string
	maxSize int64
	log     *slog.Logger

	commitMu sync.Mutex
	mu       sync.Mutex
	files    map[string]*os.File // open images by SHA-256, for serving
}

// Meta describes an upload.
type Meta struct {
	Version, Name, Notes, Target string
}

// OpenLibrary opens (creating) the library under dir and removes temp
// files of interrupted uploads and files without a row.
func OpenLibrary(ctx context.Context, db *store.DB, dir string, maxSize int64, log *slog.Logger) (*Library, error) {
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("firmware: library: %w", err)
	}
	l := &Library{db: db, dir: dir, maxSize: maxSize, log: log.With("component", "firmware"), files: map[string]*os.File{}}
	if err := l.sweep(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// MaxSize is the size limit of an image.
func (l *Library) MaxSize() int64 { return l.maxSize }

// Dir is where the images live.
func (l *Library) Dir() string { return l.dir }

func (l *Library) sweep(ctx context.Context) error {
	imgs, err := l.db.Firmwares(ctx)
	if err != nil {
		return fmt.Errorf("firmware: library: %w", err)
	}
	known := map[string]bool{}
	for _, f := range imgs {
		known[f.FileName] = true
	}
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("firmware: library: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() || known[e.Name()] {
			continue
		}
		// A temp file of an upload that did not finish, or an image whose
		// row was never written (a crash between rename and insert).
		if err := os.Remove(filepath.Join(l.dir, e.Name())); err == nil {
			l.log.Info("removed a leftover of an interrupted upload", "file", e.Name())
		}
	}
	return nil
}

func fileName(sum string) string { return sum + ".bin" }

// Add streams an image to disk, hashing it on the way, checks it, moves it
// under its SHA-256 and records it. Nothing is left behind on failure.
func (l *Library) Add(ctx context.Context, r io.Reader, m Meta) (store.Firmware, error) {
	if err := m.check(); err != nil {
		return store.Firmware{}, err
	}
	st, err := l.Stage(ctx, r)
	if err != nil {
		return store.Firmware{}, err
	}
	return st.Commit(ctx, m)
}

func (m *Meta) check() error {
	m.Version, m.Name, m.Target = strings.TrimSpace(m.Version), strings.TrimSpace(m.Name), strings.TrimSpace(m.Target)
	if m.Version == "" {
		return fmt.Errorf("firmware: %w: version is required", store.ErrInvalid)
	}
	if len(m.Version) > 64 || len(m.Name) > 200 || len(m.Target) > 200 || len(m.Notes) > 64<<10 {
		return fmt.Errorf("firmware: %w: version (64 bytes), name and target (200) or notes (64 KiB) too long", store.ErrInvalid)
	}
	return nil
}

// Staged is an upload on disk, checked and hashed, not yet in the library
// (a multipart form may send the file before its version). Commit or
// Discard it.
type Staged struct {
	l    *Library
	tmp  string
	sum  string
	size int64
}

// SHA256 and Size describe the staged image.
func (st *Staged) SHA256() string { return st.sum }

// Size is the staged image's length.
func (st *Staged) Size() int64 { return st.size }

// Stage streams an upload into a temp file of the library, hashing it on
// the way and never holding it in memory, and checks size and type.
func (l *Library) Stage(ctx context.Context, r io.Reader) (*Staged, error) {
	tmp, err := os.CreateTemp(l.dir, tempPrefix+"*.tmp")
	if err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	sn := &sniffer{}
	n, err := io.Copy(io.MultiWriter(tmp, h, sn), io.LimitReader(r, l.maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("firmware: upload interrupted after %d bytes: %w", n, err)
	}
	if n > l.maxSize {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, l.maxSize)
	}
	if err := sn.check(n); err != nil {
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("firmware: %w", err)
	}
	keep = true
	return &Staged{l: l, tmp: tmp.Name(), sum: hex.EncodeToString(h.Sum(nil)), size: n}, nil
}

// Discard removes a staged upload.
func (st *Staged) Discard() {
	if st != nil && st.tmp != "" {
		os.Remove(st.tmp)
		st.tmp = ""
	}
}

// Commit moves the staged file under its hash and writes its row; on any
// failure neither stays.
func (st *Staged) Commit(ctx context.Context, m Meta) (store.Firmware, error) {
	defer st.Discard()
	l := st.l
	if err := m.check(); err != nil {
		return store.Firmware{}, err
	}
	// One commit at a time: two uploads of the same image must not both
	// pass the duplicate check, and the loser must not remove the
	// winner's file.
	l.commitMu.Lock()
	defer l.commitMu.Unlock()
	if old, err := l.db.FirmwareBySHA256(ctx, st.sum); err == nil {
		return store.Firmware{}, fmt.Errorf("firmware: %w: the same image is in the library as #%d (version %s)", store.ErrConflict, old.ID, old.Version)
	}
	final := filepath.Join(l.dir, fileName(st.sum))
	if err := os.Rename(st.tmp, final); err != nil {
		return store.Firmware{}, fmt.Errorf("firmware: %w", err)
	}
	st.tmp = ""
	syncDir(l.dir)
	f, err := l.db.AddFirmware(ctx, store.Firmware{Version: m.Version, Name: m.Name, FileName: fileName(st.sum), SHA256: st.sum, Size: st.size, Notes: m.Notes, Target: m.Target})
	if err != nil {
		os.Remove(final)
		return store.Firmware{}, fmt.Errorf("firmware: %w", err)
	}
	l.log.Info("image added", "id", f.ID, "version", f.Version, "sha256", st.sum, "size", st.size)
	return f, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// sniffer keeps the first bytes of an upload to tell an image from text.
type sniffer struct{ head []byte }

const sniffLen = 512

func (s *sniffer) Write(p []byte) (int, error) {
	if room := sniffLen - len(s.head); room > 0 {
		s.head = append(s.head, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// check refuses what is not a firmware image: an empty file, or one whose
// first bytes are text (an HTML page saved by mistake, a README, JSON).
// Images are binary: a Zephyr/MCUboot image starts with the magic
// 0x96f3b83d, a zip or a signed package with their own binary headers.
func (s *sniffer) check(n int64) error {
	if n == 0 {
		return fmt.Errorf("%w: the file is empty", ErrNotImage)
	}
	ct := http.DetectContentType(s.head)
	// DetectContentType (the WHATWG sniffing rules) calls anything
	// without binary control bytes text/plain.
	if strings.HasPrefix(ct, "text/") {
		return fmt.Errorf("%w: the file is text (%s)", ErrNotImage, strings.SplitN(ct, ";", 2)[0])
	}
	return nil
}

// List returns the library, newest first.
func (l *Library) List(ctx context.Context) ([]store.Firmware, error) {
	return l.db.Firmwares(ctx)
}

// Image finds an image by its id or its SHA-256 (lower- or upper-case hex).
func (l *Library) Image(ctx context.Context, key string) (store.Firmware, error) {
	if id, ok := parseID(key); ok {
		return l.db.FirmwareByID(ctx, id)
	}
	if isHash(key) {
		return l.db.FirmwareBySHA256(ctx, strings.ToLower(key))
	}
	return store.Firmware{}, fmt.Errorf("firmware: image %q: %w", key, store.ErrNotFound)
}

// Delete removes an image and its file; ErrConflict while a deployment
// refers to it.
func (l *Library) Delete(ctx context.Context, id int64) error {
	f, err := l.db.FirmwareByID(ctx, id)
	if err != nil {
		return err
	}
	if err := l.db.DeleteFirmware(ctx, id); err != nil {
		return err
	}
	l.mu.Lock()
	if fh := l.files[f.SHA256]; fh != nil {
		fh.Close()
		delete(l.files, f.SHA256)
	}
	l.mu.Unlock()
	if err := os.Remove(filepath.Join(l.dir, f.FileName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.log.Warn("image file not removed", "file", f.FileName, "err", err)
	}
	l.log.Info("image deleted", "id", id, "sha256", f.SHA256)
	return nil
}

// file returns the open file of an image, shared by every download.
func (l *Library) file(f store.Firmware) (*os.File, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if fh := l.files[f.SHA256]; fh != nil {
		return fh, nil
	}
	fh, err := os.Open(l.path(f))
	if err != nil {
		return nil, fmt.Errorf("firmware: image %d: %w", f.ID, err)
	}
	l.files[f.SHA256] = fh
	return fh, nil
}

// path is an image's file.
func (l *Library) path(f store.Firmware) string {
	return filepath.Join(l.dir, filepath.Base(f.FileName))
}

// Close closes the open image files.
func (l *Library) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, fh := range l.files {
		fh.Close()
		delete(l.files, k)
	}
	return nil
}

// parseID accepts a positive decimal id without sign or leading zeros.
func parseID(s string) (int64, bool) {
	if s == "" || len(s) > 18 || s[0] == '0' {
		return 0, false
	}
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func isHash(s string) bool { return isHex(s, 64) }

// isHex reports whether s is n hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

package appliance

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ErrBadPackage is returned for a file that is not a readable Debian binary
// package (deb(5)).
var ErrBadPackage = errors.New("not a valid .deb package")

// PackageInfo is what the control file of a .deb says about it.
type PackageInfo struct {
	Package      string `json:"package"`
	Version      string `json:"version"`
	Architecture string `json:"architecture"`
}

// maxControlSize bounds the control member read into memory; real control
// archives are a few KiB.
const maxControlSize = 1 << 20

// ReadPackageInfo reads the control file of a .deb: an ar(5) archive whose
// members are debian-binary, control.tar[.gz|.xz|.zst] and data.tar.*
// (deb(5)). Only the control member is decompressed.
func ReadPackageInfo(r io.Reader) (PackageInfo, error) {
	br := bufio.NewReader(r)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != "!<arch>\n" {
		return PackageInfo{}, fmt.Errorf("%w: no ar archive signature", ErrBadPackage)
	}
	sawBinary := false
	for {
		hdr := make([]byte, 60)
		if _, err := io.ReadFull(br, hdr); err != nil {
			if errors.Is(err, io.EOF) {
				return PackageInfo{}, fmt.Errorf("%w: no control member", ErrBadPackage)
			}
			return PackageInfo{}, fmt.Errorf("%w: truncated member header", ErrBadPackage)
		}
		if string(hdr[58:60]) != "`\n" {
			return PackageInfo{}, fmt.Errorf("%w: bad member header", ErrBadPackage)
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return PackageInfo{}, fmt.Errorf("%w: member %q: bad size", ErrBadPackage, name)
		}
		switch {
		case name == "debian-binary":
			b := make([]byte, min(size, 64))
			if _, err := io.ReadFull(br, b); err != nil {
				return PackageInfo{}, fmt.Errorf("%w: debian-binary: %v", ErrBadPackage, err)
			}
			if !bytes.HasPrefix(b, []byte("2.")) {
				return PackageInfo{}, fmt.Errorf("%w: format version %q", ErrBadPackage, bytes.TrimSpace(b))
			}
			sawBinary = true
			if _, err := io.CopyN(io.Discard, br, size-int64(len(b))+size%2); err != nil {
				return PackageInfo{}, fmt.Errorf("%w: debian-binary: %v", ErrBadPackage, err)
			}
			continue
		case strings.HasPrefix(name, "control.tar"):
			if !sawBinary {
				return PackageInfo{}, fmt.Errorf("%w: debian-binary must come first", ErrBadPackage)
			}
			if size > maxControlSize {
				return PackageInfo{}, fmt.Errorf("%w: control member of %d bytes", ErrBadPackage, size)
			}
			member := io.LimitReader(br, size)
			return readControlTar(strings.TrimPrefix(name, "control.tar"), member)
		default:
			if _, err := io.CopyN(io.Discard, br, size+size%2); err != nil {
				return PackageInfo{}, fmt.Errorf("%w: member %q truncated", ErrBadPackage, name)
			}
		}
	}
}

func readControlTar(ext string, r io.Reader) (PackageInfo, error) {
	var tr io.Reader
	switch ext {
	case "":
		tr = r
	case ".gz":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return PackageInfo{}, fmt.Errorf("%w: control.tar.gz: %v", ErrBadPackage, err)
		}
		defer zr.Close()
		tr = zr
	case ".xz":
		zr, err := xz.NewReader(r)
		if err != nil {
			return PackageInfo{}, fmt.Errorf("%w: control.tar.xz: %v", ErrBadPackage, err)
		}
		tr = zr
	case ".zst":
		zr, err := zstd.NewReader(r, zstd.WithDecoderMaxMemory(64<<20))
		if err != nil {
			return PackageInfo{}, fmt.Errorf("%w: control.tar.zst: %v", ErrBadPackage, err)
		}
		defer zr.Close()
		tr = zr
	default:
		return PackageInfo{}, fmt.Errorf("%w: control member compression %q", ErrBadPackage, ext)
	}
	t := tar.NewReader(io.LimitReader(tr, maxControlSize))
	for {
		h, err := t.Next()
		if err != nil {
			return PackageInfo{}, fmt.Errorf("%w: control file not found: %v", ErrBadPackage, err)
		}
		if strings.TrimPrefix(h.Name, "./") != "control" || h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(t, 64<<10))
		if err != nil {
			return PackageInfo{}, fmt.Errorf("%w: control file: %v", ErrBadPackage, err)
		}
		return parseControl(b)
	}
}

// parseControl reads the fields of a control file (deb-control(5)); folded
// continuation lines are skipped, the fields needed here are single-line.
func parseControl(b []byte) (PackageInfo, error) {
	var info PackageInfo
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return PackageInfo{}, fmt.Errorf("%w: control line %q", ErrBadPackage, line)
		}
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "package":
			info.Package = v
		case "version":
			info.Version = v
		case "architecture":
			info.Architecture = v
		}
	}
	if info.Package == "" || info.Version == "" || info.Architecture == "" {
		return PackageInfo{}, fmt.Errorf("%w: control file lacks Package, Version or Architecture", ErrBadPackage)
	}
	if _, err := parseDebVersion(info.Version); err != nil {
		return PackageInfo{}, fmt.Errorf("%w: %v", ErrBadPackage, err)
	}
	return info, nil
}

// DebianArch is the dpkg architecture name of the running binary.
func DebianArch() string {
	switch runtime.GOARCH {
	case "arm":
		return "armhf"
	case "386":
		return "i386"
	case "ppc64le":
		return "ppc64el"
	}
	return runtime.GOARCH
}

type debVersion struct {
	epoch              int
	upstream, revision string
}

// parseDebVersion splits [epoch:]upstream[-revision] (deb-version(7)).
func parseDebVersion(s string) (debVersion, error) {
	var v debVersion
	if s == "" || strings.ContainsAny(s, " \t\n") {
		return v, fmt.Errorf("version %q is empty or has spaces", s)
	}
	rest := s
	if e, r, ok := strings.Cut(s, ":"); ok {
		n, err := strconv.Atoi(e)
		if err != nil || n < 0 {
			return v, fmt.Errorf("version %q: bad epoch", s)
		}
		v.epoch, rest = n, r
	}
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		v.upstream, v.revision = rest[:i], rest[i+1:]
		if v.revision == "" {
			return v, fmt.Errorf("version %q: empty revision", s)
		}
	} else {
		v.upstream = rest
	}
	if v.upstream == "" || v.upstream[0] < '0' || v.upstream[0] > '9' {
		return v, fmt.Errorf("version %q: upstream part must start with a digit", s)
	}
	for _, c := range v.upstream + v.revision {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.ContainsRune(".+~-:", c)) {
			return v, fmt.Errorf("version %q: character %q not allowed", s, c)
		}
	}
	return v, nil
}

// CompareDebVersions orders two Debian versions as dpkg does: -1, 0 or 1.
func CompareDebVersions(a, b string) (int, error) {
	va, err := parseDebVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := parseDebVersion(b)
	if err != nil {
		return 0, err
	}
	if va.epoch != vb.epoch {
		if va.epoch < vb.epoch {
			return -1, nil
		}
		return 1, nil
	}
	if c := verrevcmp(va.upstream, vb.upstream); c != 0 {
		return c, nil
	}
	return verrevcmp(va.revision, vb.revision), nil
}

// order ranks one character of a non-digit run: '~' sorts before
// everything, even the end of the string; letters before other characters.
func order(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return 0
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		return int(c)
	case c == '~':
		return -1
	case c == 0:
		return 0
	}
	return int(c) + 256
}

// verrevcmp compares alternating non-digit and digit runs (deb-version(7)).
func verrevcmp(a, b string) int {
	at := func(s string, i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := order(at(a, i)), order(at(b, j))
			if i < len(a) && isDigit(a[i]) {
				ac = 0
			}
			if j < len(b) && isDigit(b[j]) {
				bc = 0
			}
			if ac != bc {
				return sign(ac - bc)
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		first := 0
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if first == 0 {
				first = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if first != 0 {
			return sign(first)
		}
	}
	return 0
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

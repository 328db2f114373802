package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// BackupWorkPrefix names the temporary directories backups stage their
// copy of the database in, next to the database.
const BackupWorkPrefix = ".backup-"

// workLock is the file inside a work directory its owner holds an
// exclusive flock on; the kernel drops the lock when the owner dies.
const workLock = ".owner"

// MakeWorkDir creates a temporary directory prefix* under parent and
// locks it for this process until release, which also removes it. A
// process killed meanwhile leaves the directory behind unlocked, and
// RemoveStaleWorkDirs takes it away at the next start — a backup killed
// half-way must not leave a database-sized file to fill the disk.
func MakeWorkDir(parent, prefix string) (dir string, release func(), err error) {
	dir, err = os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", nil, fmt.Errorf("store: work dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, workLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("store: work dir: %w", err)
	}
	return dir, func() {
		os.RemoveAll(dir)
		f.Close()
	}, nil
}

// RemoveStaleWorkDirs removes the directories prefix* under parent that
// no live process holds (see MakeWorkDir) and reports how many it
// removed. A directory in use by another process (`flownexus backup`
// next to the service) is left alone.
func RemoveStaleWorkDirs(parent, prefix string) (int, error) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("store: stale work dirs: %w", err)
	}
	n := 0
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		if held(filepath.Join(dir, workLock)) {
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			return n, fmt.Errorf("store: stale work dir %s: %w", dir, err)
		}
		n++
	}
	return n, nil
}

// held reports whether another process holds the lock file p; a missing
// lock file (a directory from an older version, or one killed before it
// locked) counts as free.
func held(p string) bool {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

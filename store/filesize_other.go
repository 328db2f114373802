//go:build !linux

package store

// fileSize returns the size of the file at path.
func fileSize(path string) (int64, error) { return fileSizeStat(path) }

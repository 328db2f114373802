package store

import "os"

// fileSizeStat is fileSize through a full stat: the fallback where the
// size cannot be asked for alone (filesize_linux.go, filesize_other.go).
func fileSizeStat(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

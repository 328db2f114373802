package lwm2m

import (
	"sort"
	"time"
)

// Record is one value at one path, with the time it was measured when the
// payload says so (SenML and LwM2M JSON/CBOR timestamps); Time is zero
// otherwise. Structured payloads decode to a flat list of records at
// resource or resource-instance level, which is what every format can carry.
type Record struct {
	Path  Path
	Value Value
	Time  time.Time
}

// SortRecords orders records by path, then by time, stably.
func SortRecords(rs []Record) {
	sort.SliceStable(rs, func(i, j int) bool {
		if c := rs[i].Path.Compare(rs[j].Path); c != 0 {
			return c < 0
		}
		return rs[i].Time.Before(rs[j].Time)
	})
}

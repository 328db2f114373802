package webui

import (
	"strings"
	"time"

	"github.com/flownexus/flownexus/lwm2m"
)

// destructiveExecutes are executable resources whose effect cannot be
// taken back: the device page asks before sending them.
var destructiveExecutes = map[[2]uint16]string{
	{3, 4}:  "Reboot",                    // Device: Reboot
	{3, 5}:  "Factory Reset",             // Device: Factory Reset
	{5, 2}:  "Update",                    // Firmware Update: Update
	{1, 4}:  "Disable",                   // Server: Disable
	{1, 8}:  "Bootstrap-Request Trigger", // Server: Bootstrap-Request Trigger
	{3, 12}: "Reset Error Code",          // Device: Reset Error Code
}

// constantResources are numeric resources that describe a sensor rather
// than measure anything (IPSO range values, the memory size): they have
// no place in the chart picker.
var constantResources = map[uint16]bool{5603: true, 5604: true, 5605: true}

var constantDeviceResources = map[uint16]bool{21: true, 6: true, 7: true, 8: true, 11: true}

func chartable(r resourceView, oid uint16) bool {
	if !r.Numeric || r.Time.IsZero() || constantResources[r.ID] {
		return false
	}
	return !(oid == 3 && constantDeviceResources[r.ID])
}

// unitLabel turns an object model's unit (UCUM-ish, as in the OMA
// registry) into what a person reads.
func unitLabel(u string) string {
	switch u {
	case "/100":
		return "%"
	case "Cel":
		return "°C"
	case "far":
		return "°F"
	case "KB", "KiB":
		return "KiB"
	}
	return u
}

// valueText formats a value by its model type: a Time resource as a date
// even when the device sent it as a plain integer (Core §C.2: Time is
// Unix seconds).
func valueText(v lwm2m.Value, typ string) string {
	if typ == lwm2m.TypeTime.String() {
		if n, ok := v.Number(); ok && n > 0 {
			return time.Unix(int64(n), 0).UTC().Format("2006-01-02 15:04:05Z")
		}
	}
	return v.Text()
}

// recentValue is how new a value must be for its object to open on the
// device page; the others stay folded so the page is not all tables.
const recentValue = time.Hour

func openObjects(objs []objectView, now time.Time) {
	for i := range objs {
		for _, in := range objs[i].Instances {
			for _, r := range in.Resources {
				if !r.Time.IsZero() && now.Sub(r.Time) < recentValue {
					objs[i].Open = true
				}
			}
		}
	}
}

// destructiveList is the op form's list of executes that need a yes:
// "3/0/4=Reboot;3/0/5=Factory Reset".
func destructiveList(objs []objectView) string {
	var parts []string
	for _, o := range objs {
		for _, in := range o.Instances {
			for _, r := range in.Resources {
				if r.Confirm != "" {
					parts = append(parts, r.Path+"="+r.Confirm)
				}
			}
		}
	}
	return strings.Join(parts, ";")
}

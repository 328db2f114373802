package firmware

import "fmt"

// Object 5 (Firmware Update) resources, OMA-TS-LightweightM2M-Core 1.1
// Appendix E.6 and the registry's object 5 version 1.2.
const (
	resPackage         = 0
	resPackageURI      = 1
	resUpdate          = 2
	resState           = 3
	resUpdateResult    = 5
	resPkgVersion      = 7
	resProtocolSupport = 8
	resDeliveryMethod  = 9
)

// State 5/0/3 values.
const (
	StateIdle        = 0
	StateDownloading = 1
	StateDownloaded  = 2
	StateUpdating    = 3
)

// Update Result 5/0/5 values.
const (
	ResultInitial      = 0
	ResultSuccess      = 1
	ResultDeferred     = 11
	deliveryPushOnly   = 1
	protoCoAP          = 0
	protoCoAPS         = 1
	protoHTTP          = 2
	protoHTTPS         = 3
	highestKnownResult = 11
)

// StateMessage says what an Object 5 State means to an operator.
func StateMessage(s int64) string {
	switch s {
	case StateIdle:
		return "idle: no package downloaded (before a download, or after an update or a reset)"
	case StateDownloading:
		return "downloading the package"
	case StateDownloaded:
		return "package downloaded and checked; waiting for the Update command"
	case StateUpdating:
		return "installing the package (the device may restart)"
	}
	return fmt.Sprintf("unknown state %d", s)
}

// ResultMessage says what an Object 5 Update Result means to an operator
// (Core 1.1 E.6 values 0–9, object 5 v1.1/1.2 add 10 and 11).
func ResultMessage(r int64) string {
	switch r {
	case 0:
		return "no result yet (the update is in progress or has not started)"
	case 1:
		return "firmware updated successfully"
	case 2:
		return "not enough flash memory on the device for the package"
	case 3:
		return "the device ran out of RAM while downloading"
	case 4:
		return "the connection was lost during the download"
	case 5:
		return "integrity check failed: the downloaded package is corrupt or does not match its signature or hash"
	case 6:
		return "the device does not support this package type (wrong image for this hardware?)"
	case 7:
		return "the device considers the Package URI invalid"
	case 8:
		return "the firmware update failed on the device (it kept or rolled back to its old firmware)"
	case 9:
		return "the device does not support the download protocol of the Package URI"
	case 10:
		return "the update was cancelled on the device"
	case 11:
		return "the update was deferred on the device (its user postponed it)"
	}
	return fmt.Sprintf("unknown update result %d", r)
}

// failedResult reports whether an Update Result ends the update in
// failure (2–10; 11, deferred, waits).
func failedResult(r int64) bool { return r >= 2 && r <= 10 || r > highestKnownResult }

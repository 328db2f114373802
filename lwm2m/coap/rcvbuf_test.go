package coap

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// rmemMax is net.core.rmem_max, the most an unprivileged socket gets.
func rmemMax(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Skip("no /proc/sys/net/core/rmem_max")
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestReadBuffer: ListenUDP asks for DefaultReadBuffer (or the size given)
// and reports what the kernel granted: all of it up to rmem_max, more with
// SO_RCVBUFFORCE when privileged.
func TestReadBuffer(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_RCVBUF is read back on Linux only")
	}
	max := rmemMax(t)
	for _, want := range []int{64 << 10, DefaultReadBuffer, 16 << 20} {
		tr, err := ListenUDP("127.0.0.1:0", WithReadBuffer(want))
		if err != nil {
			t.Fatal(err)
		}
		got := ReadBuffer(tr)
		tr.Close()
		if got < min(want, max) {
			t.Errorf("asked %d, rmem_max %d: granted %d", want, max, got)
		}
		if os.Geteuid() == 0 && got < want {
			t.Errorf("as root, SO_RCVBUFFORCE should grant %d: got %d", want, got)
		}
		t.Logf("asked %d, rmem_max %d, granted %d", want, max, got)
	}
	// Without the option the default is asked for.
	tr, err := ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got := ReadBuffer(tr); got < min(DefaultReadBuffer, max) {
		t.Errorf("default: granted %d", got)
	}
}

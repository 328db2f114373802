package appliance

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/flownexus/flownexus/simulation"
	"github.com/flownexus/flownexus/webui"
)

// libcoapTool finds one of libcoap's clients (Debian libcoap3-bin); missing,
// it skips loudly, or fails under CI=true where it must be installed.
func libcoapTool(t *testing.T, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("INTEROP TOOL MISSING under CI: none of %v (Debian libcoap3-bin)", names)
	}
	t.Skipf("!!! INTEROP TEST SKIPPED: none of %v is installed (Debian libcoap3-bin)", names)
	return ""
}

// TestFirmwareLibcoapBlockwise: libcoap's client downloads a deployed
// image over coap and coaps (with the device's own PSK identity) at block
// sizes 16, 256 and 1024, from the first block and from block N, and gets
// exactly the image's bytes (RFC 7959 §2.4).
func TestFirmwareLibcoapBlockwise(t *testing.T) {
	plainBin := libcoapTool(t, "coap-client-notls", "coap-client", "coap-client-openssl")
	dtlsBin := libcoapTool(t, "coap-client-openssl", "coap-client-gnutls")
	ta := startAppliance(t, testConfig(t), WithFirmwareSweep(200*time.Millisecond))
	hold := func(protos ...int64) func(*simulation.DeviceConfig) {
		return func(dc *simulation.DeviceConfig) {
			dc.FirmwareUpdate = simulation.FirmwareConfig{Protocols: protos, Hold: true}
		}
	}
	// The plain device registers from 127.0.0.1, where libcoap runs.
	plain := ta.startFWDeviceKey("lc-plain", nil, hold(0))
	key := []byte("libcoap-psk-0001")
	secure := ta.startFWDeviceKey("lc-psk", key, hold(1))
	img := simulation.FirmwareImage("7.0.0", 10000, 7)
	id := ta.mustUpload("7.0.0", img)
	dep := ta.deploy(id, webui.DeployRequest{Endpoints: []string{"lc-plain", "lc-psk"}})
	ta.waitDeployment(t, dep, "URIs written", 20*time.Second, func(d webui.Deployment) bool { return d.Counts["downloading"] == 2 })
	waitURI(t, plain, secure)

	dir := t.TempDir()
	// fetch runs the client for one GET starting at block num and returns
	// what it wrote. From block 0 libcoap fetches the rest itself; from
	// block N > 0 (libcoap 3's -b N,size) it asks for that block alone,
	// as a client resuming an interrupted download does block by block.
	fetch := func(bin, uri string, extra []string, num, size int) []byte {
		t.Helper()
		out := filepath.Join(dir, fmt.Sprintf("b-%d-%d.bin", num, size))
		args := append([]string{"-B", "60", "-m", "get", "-b", fmt.Sprintf("%d,%d", num, size), "-o", out}, extra...)
		args = append(args, uri)
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		log, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, log)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", bin, args, err, log)
		}
		os.Remove(out)
		return got
	}
	for _, tc := range []struct {
		name string
		bin  string
		uri  string
		args []string
	}{
		{"coap", plainBin, plain.dev.PackageURI(), nil},
		{"coaps", dtlsBin, secure.dev.PackageURI(), []string{"-u", "lc-psk", "-k", string(key)}},
	} {
		u, err := url.Parse(tc.uri)
		if err != nil || u.Scheme != tc.name {
			t.Fatalf("%s device got %q", tc.name, tc.uri)
		}
		for _, size := range []int{16, 256, 1024} {
			if got := fetch(tc.bin, tc.uri, tc.args, 0, size); !bytes.Equal(got, img) {
				t.Errorf("%s size %d: %d bytes, want the %d of the image", tc.name, size, len(got), len(img))
			}
			// Resume in the middle: blocks N and N+1, and the short last one.
			last := (len(img) - 1) / size
			var got []byte
			for _, n := range []int{3, 4, last} {
				got = append(got, fetch(tc.bin, tc.uri, tc.args, n, size)...)
			}
			want := append(append([]byte{}, img[3*size:5*size]...), img[last*size:]...)
			if !bytes.Equal(got, want) {
				t.Errorf("%s size %d, blocks 3, 4 and %d: %d bytes, want %d", tc.name, size, last, len(got), len(want))
			}
		}
	}
}

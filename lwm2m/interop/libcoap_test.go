package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/coap"
	"github.com/flownexus/flownexus/lwm2m/server"
)

// coapClient finds libcoap's command-line client; Debian's libcoap3-bin
// ships it as coap-client-notls, coap-client-openssl and coap-client-gnutls
// (and some builds as plain coap-client).
func coapClient(t *testing.T) string {
	return needTool(t, "Debian package libcoap3-bin", "coap-client-notls", "coap-client", "coap-client-openssl", "coap-client-gnutls")
}

// runCoAP runs the client with verbose logging (so the response's options
// show) and returns its output.
func runCoAP(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	all := append([]string{"-B", "10", "-v", "7"}, args...)
	out, err := exec.CommandContext(ctx, bin, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", filepath.Base(bin), all, err, out)
	}
	return string(out)
}

var locationRe = regexp.MustCompile(`Location-Path:([^ ,\]]+)`)

// responseCode finds the code of the last response in libcoap's log
// ("v:1 t:ACK c:2.01 …").
func responseCode(out string) string {
	re := regexp.MustCompile(`t:(?:ACK|CON|NON) c:([0-9]\.[0-9]{2})`)
	m := re.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1][1]
}

// TestLibcoapRegistration: Register, Update and De-register sent by raw
// libcoap requests; each invocation uses a new source port, which the
// server accepts as the same registration (NAT rebinding).
func TestLibcoapRegistration(t *testing.T) {
	bin := coapClient(t)
	rec := newRecorder()
	srv, port := startServer(t, rec)
	base := fmt.Sprintf("coap://127.0.0.1:%d", port)

	out := runCoAP(t, bin, "-m", "post", "-t", "40", "-e", `</>;rt="oma.lwm2m";ct=110,</1/0>,</3/0>,</3303/0>,</3303/1>`,
		base+"/rd?ep=libcoap-1&lt=60&lwm2m=1.1&b=U")
	if c := responseCode(out); c != "2.01" {
		t.Fatalf("register answered %q:\n%s", c, out)
	}
	loc := locationRe.FindAllStringSubmatch(out, -1)
	if len(loc) != 2 || loc[0][1] != "rd" {
		t.Fatalf("Location-Path in %s", out)
	}
	id := loc[1][1]
	reg := waitFor(t, rec.registered, "registration")
	if reg.Endpoint != "libcoap-1" || reg.ID != id || reg.Lifetime != 60*time.Second || reg.LwM2MVersion != "1.1" {
		t.Fatalf("registration %+v", reg)
	}
	if o, ok := findObject(reg, 3303); !ok || len(o) != 2 {
		t.Fatalf("objects %+v", reg.Objects)
	}

	out = runCoAP(t, bin, "-m", "post", base+"/rd/"+id+"?lt=120")
	if c := responseCode(out); c != "2.04" {
		t.Fatalf("update answered %q:\n%s", c, out)
	}
	upd := waitFor(t, rec.updated, "update")
	if upd.Lifetime != 120*time.Second {
		t.Fatalf("lifetime after update %v", upd.Lifetime)
	}
	if got, _ := srv.Registration("libcoap-1"); got.Lifetime != 120*time.Second {
		t.Fatalf("server registration %+v", got)
	}

	// Refusals: unknown registration, missing endpoint name, bad lifetime.
	if c := responseCode(runCoAP(t, bin, "-m", "post", base+"/rd/nosuchid")); c != "4.04" {
		t.Fatalf("update of unknown registration: %q", c)
	}
	if c := responseCode(runCoAP(t, bin, "-m", "post", "-t", "40", "-e", "</3/0>", base+"/rd?lt=60")); c != "4.00" {
		t.Fatalf("register without ep: %q", c)
	}
	if c := responseCode(runCoAP(t, bin, "-m", "post", "-t", "40", "-e", "</3/0>", base+"/rd?ep=x&lt=abc")); c != "4.00" {
		t.Fatalf("register with bad lt: %q", c)
	}
	if c := responseCode(runCoAP(t, bin, "-m", "get", base+"/rd")); c != "4.05" {
		t.Fatalf("GET /rd: %q", c)
	}

	out = runCoAP(t, bin, "-m", "delete", base+"/rd/"+id)
	if c := responseCode(out); c != "2.02" {
		t.Fatalf("de-register answered %q:\n%s", c, out)
	}
	if d := waitFor(t, rec.deregs, "de-register"); d.Endpoint != "libcoap-1" {
		t.Fatalf("de-registered %+v", d)
	}
	if _, ok := srv.Registration("libcoap-1"); ok {
		t.Fatal("registration left after de-register")
	}
}

// findObject returns the instances of object id in a registration.
func findObject(reg *server.Registration, id uint16) ([]uint16, bool) {
	for _, o := range reg.Objects {
		if o.ID == id {
			return o.Instances, true
		}
	}
	return nil, false
}

// TestLibcoapBlock1Register: a registration payload larger than one block
// goes in Block1 blocks of 64 bytes (RFC 7959 §2.5) and is reassembled by
// the server.
func TestLibcoapBlock1Register(t *testing.T) {
	bin := coapClient(t)
	rec := newRecorder()
	_, port := startServer(t, rec)
	var links []string
	links = append(links, "</1/0>", "</3/0>")
	for i := 0; i < 200; i++ {
		links = append(links, fmt.Sprintf("</3303/%d>", i))
	}
	payload := strings.Join(links, ",")
	file := filepath.Join(t.TempDir(), "links")
	if err := os.WriteFile(file, []byte(payload), 0o600); err != nil {
		t.Fatal(err)
	}
	out := runCoAP(t, bin, "-m", "post", "-t", "40", "-b", "64", "-f", file,
		fmt.Sprintf("coap://127.0.0.1:%d/rd?ep=libcoap-block1&lt=60", port))
	if !strings.Contains(out, "Block1:") {
		t.Fatalf("no Block1 transfer in:\n%s", out)
	}
	if c := responseCode(out); c != "2.01" {
		t.Fatalf("block-wise register answered %q:\n%s", c, out)
	}
	reg := waitFor(t, rec.registered, "registration")
	if len(payload) < 2000 || reg.Links != payload {
		t.Fatalf("server got %d bytes of links, sent %d", len(reg.Links), len(payload))
	}
	insts, ok := findObject(reg, 3303)
	if !ok || len(insts) != 200 {
		t.Fatalf("3303 instances: %d", len(insts))
	}
}

// TestLibcoapBlock2Get: a large resource served by an extra handler on the
// server's listener is fetched by libcoap in Block2 blocks with ETag and
// Size2 (RFC 7959 §2.4, §4), and arrives intact.
func TestLibcoapBlock2Get(t *testing.T) {
	bin := coapClient(t)
	rec := newRecorder()
	image := make([]byte, 5000)
	r := rand.New(rand.NewPCG(7, 7))
	for i := range image {
		image[i] = byte(r.Uint32())
	}
	sum := sha256.Sum256(image)
	serveImage := coap.HandlerFunc(func(_ context.Context, req *coap.Request) *coap.Response {
		if req.Message.Path() != "/fw/1" {
			return coap.ErrorResponse(coap.NotFound, "no such image")
		}
		resp := coap.NewResponse(coap.Content)
		resp.SetContentFormat(42)
		resp.SetOption(coap.ETag, sum[:8])
		resp.Body = bytes.NewReader(image)
		resp.BodySize = int64(len(image))
		return resp
	})
	_, port := startServer(t, rec, func(s *server.Server) { s.Handle("/fw/", serveImage) })
	file := filepath.Join(t.TempDir(), "image")
	out := runCoAP(t, bin, "-m", "get", "-b", "256", "-o", file, fmt.Sprintf("coap://127.0.0.1:%d/fw/1", port))
	if !strings.Contains(out, "Block2:") {
		t.Fatalf("no Block2 transfer in:\n%s", out)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, image) {
		t.Fatalf("fetched %d bytes, differ from the %d served", len(got), len(image))
	}
	if c := responseCode(runCoAP(t, bin, "-m", "get", fmt.Sprintf("coap://127.0.0.1:%d/fw/2", port))); c != "4.04" {
		t.Fatalf("unknown image: %q", c)
	}
}

package dtls

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/flownexus/flownexus/lwm2m/server"
)

// libcoap's command-line client in its two DTLS builds (Debian package
// libcoap3-bin) registering over this transport at the LwM2M server.
var libcoapClients = []string{"coap-client-openssl", "coap-client-gnutls"}

func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI (Debian package libcoap3-bin): %v", name, err)
		}
		t.Skipf("SKIPPING libcoap interop: %s not installed (apt-get install libcoap3-bin)", name)
	}
	return path
}

type regRecorder struct {
	server.NopHandler
	regs chan *server.Registration
}

func (r *regRecorder) Registered(_ context.Context, reg *server.Registration) error {
	r.regs <- reg
	return nil
}

// interopRig runs the DTLS listener and the LwM2M server.
func interopRig(t *testing.T, cfg Config) (*echoServer, chan *server.Registration) {
	t.Helper()
	events := make(chan Event, 64)
	cfg.OnEvent = func(ev Event) {
		select {
		case events <- ev:
		default:
		}
	}
	srv, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &regRecorder{regs: make(chan *server.Registration, 8)}
	lw := server.New(server.DefaultConfig(), server.WithHandler(rec))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = srv.Run(ctx); done <- struct{}{} }()
	go func() { _ = lw.Serve(ctx, srv); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return &echoServer{Server: srv, events: events}, rec.regs
}

func runLibcoap(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out)
}

func registerURI(port int, ep string) string {
	return "coaps://127.0.0.1:" + strconv.Itoa(port) + "/rd?ep=" + ep + "&lt=300&lwm2m=1.1&b=U"
}

func TestLibcoapPSK(t *testing.T) {
	for _, name := range libcoapClients {
		t.Run(name, func(t *testing.T) {
			bin := requireTool(t, name)
			cfg := DefaultConfig()
			cfg.PSK = pskTable{"libcoap-dev": []byte("secretPSK-0123456")}.lookup
			cfg.HandshakeTimeout = 5 * time.Second
			srv, regs := interopRig(t, cfg)
			port := srv.LocalAddr().(*net.UDPAddr).Port
			out := runLibcoap(t, bin, "-m", "post", "-B", "10", "-u", "libcoap-dev", "-k", "secretPSK-0123456",
				"-t", "40", "-e", "</3/0>,</1/0>", registerURI(port, "libcoap-dev"))
			select {
			case reg := <-regs:
				if reg.Endpoint != "libcoap-dev" || reg.Peer.Identity != "libcoap-dev" {
					t.Fatalf("registration %+v", reg)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("no registration; client said:\n%s", out)
			}
			// Wrong key: the handshake fails, nothing registers.
			out = runLibcoap(t, bin, "-m", "post", "-B", "3", "-u", "libcoap-dev", "-k", "not-the-key-00000",
				"-t", "40", "-e", "</3/0>", registerURI(port, "libcoap-dev"))
			select {
			case reg := <-regs:
				t.Fatalf("registered with a wrong key: %+v\n%s", reg, out)
			case ev := <-waitEvent(srv, EventFailed):
				if ev.Err == nil {
					t.Fatal("failure without reason")
				}
			}
		})
	}
}

func TestLibcoapCertificate(t *testing.T) {
	for _, name := range libcoapClients {
		t.Run(name, func(t *testing.T) {
			bin := requireTool(t, name)
			ca := newTestCA(t, "interop CA")
			cfg := DefaultConfig()
			cfg.Certificate, _ = ca.issue(t, "flownexus", true, time.Now().Add(time.Hour))
			cfg.ClientCAs = ca.pool
			cfg.HandshakeTimeout = 5 * time.Second
			srv, regs := interopRig(t, cfg)
			port := srv.LocalAddr().(*net.UDPAddr).Port

			dir := t.TempDir()
			dev, leaf := ca.issue(t, "libcoap-x509", false, time.Now().Add(time.Hour))
			keyDER, err := x509.MarshalECPrivateKey(dev.PrivateKey.(*ecdsa.PrivateKey))
			if err != nil {
				t.Fatal(err)
			}
			write := func(name, typ string, der []byte) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			certFile := write("dev.pem", "CERTIFICATE", leaf.Raw)
			keyFile := write("dev.key", "EC PRIVATE KEY", keyDER)
			caFile := write("ca.pem", "CERTIFICATE", ca.cert.Raw)
			out := runLibcoap(t, bin, "-m", "post", "-B", "10", "-c", certFile, "-j", keyFile, "-R", caFile,
				"-t", "40", "-e", "</3/0>", registerURI(port, "libcoap-x509"))
			select {
			case reg := <-regs:
				if reg.Endpoint != "libcoap-x509" || reg.Peer.Identity != "libcoap-x509" {
					t.Fatalf("registration %+v", reg)
				}
				t.Logf("registered %s from %s as %q", reg.Endpoint, reg.Peer.Addr, reg.Peer.Identity)
			case <-time.After(15 * time.Second):
				t.Fatalf("no registration; client said:\n%s", out)
			}
			// A certificate from another CA is refused at the handshake.
			other := newTestCA(t, "other CA")
			alien, aleaf := other.issue(t, "libcoap-x509", false, time.Now().Add(time.Hour))
			akey, _ := x509.MarshalECPrivateKey(alien.PrivateKey.(*ecdsa.PrivateKey))
			out = runLibcoap(t, bin, "-m", "post", "-B", "3", "-c", write("alien.pem", "CERTIFICATE", aleaf.Raw),
				"-j", write("alien.key", "EC PRIVATE KEY", akey), "-R", caFile, "-t", "40", "-e", "</3/0>", registerURI(port, "libcoap-x509"))
			select {
			case reg := <-regs:
				t.Fatalf("registered with a foreign certificate: %+v\n%s", reg, out)
			case ev := <-waitEvent(srv, EventFailed):
				if ev.Err == nil {
					t.Fatal("failure without reason")
				}
				t.Logf("foreign certificate refused: %v", ev.Err)
			}
		})
	}
}

// waitEvent delivers the next event of kind (or a timeout failure event).
func waitEvent(es *echoServer, kind EventKind) <-chan Event {
	ch := make(chan Event, 1)
	go func() {
		timeout := time.After(20 * time.Second)
		for {
			select {
			case ev := <-es.events:
				if ev.Kind == kind {
					ch <- ev
					return
				}
			case <-timeout:
				ch <- Event{Kind: kind}
				return
			}
		}
	}()
	return ch
}

// TestLibcoapStatelessCookie: libcoap's OpenSSL and GnuTLS clients take the
// stateless HelloVerifyRequest of a flood (HelloCookieAt < 0: always),
// return its cookie, and after the restart alert register on their next
// try, as a device retrying its connection does.
func TestLibcoapStatelessCookie(t *testing.T) {
	for _, name := range libcoapClients {
		t.Run(name, func(t *testing.T) {
			bin := requireTool(t, name)
			cfg := DefaultConfig()
			cfg.PSK = pskTable{"libcoap-dev": []byte("secretPSK-0123456")}.lookup
			cfg.HelloCookieAt = -1
			srv, regs := interopRig(t, cfg)
			port := srv.LocalAddr().(*net.UDPAddr).Port
			var out string
			for try := 0; try < 3; try++ {
				out += runLibcoap(t, bin, "-m", "post", "-B", "5", "-u", "libcoap-dev", "-k", "secretPSK-0123456",
					"-t", "40", "-e", "</1/0>", registerURI(port, "libcoap-dev"))
				select {
				case reg := <-regs:
					if st := srv.Stats(); st.CookiesVerified != 1 || st.StatelessHellos < 1 {
						t.Fatalf("registered without the stateless cookie: %+v", st)
					}
					t.Logf("registered on try %d: %+v", try+1, srv.Stats())
					if reg.Peer.Identity != "libcoap-dev" {
						t.Fatalf("registration %+v", reg)
					}
					return
				default:
				}
			}
			t.Fatalf("no registration after 3 tries (%+v); client said:\n%s", srv.Stats(), out)
		})
	}
}

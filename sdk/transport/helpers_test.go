package transport

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testPKI is a throw-away fleet CA for tests (sdk/pki is written concurrently; these tests only need
// certificates with CN = identity and OU = role).
type testPKI struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial atomic.Int64
}

func newPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test-fleet-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, caKey: key}
	p.serial.Store(100)
	writePEM(t, p.caFile(), "CERTIFICATE", der)
	return p
}

func (p *testPKI) caFile() string { return filepath.Join(p.dir, "ca.pem") }

type identity struct {
	certFile, keyFile string
	serial            *big.Int
}

// issue writes a key and certificate for name with role ou, valid in [notBefore, notAfter], into files
// named after file (so a later issue with the same file replaces them, as a renewal does).
func (p *testPKI) issue(t testing.TB, file, name, ou string, server bool, notBefore, notAfter time.Time) identity {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial := big.NewInt(p.serial.Add(1))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, OrganizationalUnit: []string{ou}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	id := identity{certFile: filepath.Join(p.dir, file+".pem"), keyFile: filepath.Join(p.dir, file+".key"),
		serial: serial}
	// Write to temporary names and rename, as a renewal tool should, so a reader never sees half a pair.
	writePEM(t, id.certFile+".tmp", "CERTIFICATE", der)
	writePEM(t, id.keyFile+".tmp", "EC PRIVATE KEY", kder)
	for _, f := range []string{id.certFile, id.keyFile} {
		if err := os.Rename(f+".tmp", f); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// valid issues a certificate valid from an hour ago for a year.
func (p *testPKI) valid(t testing.TB, file, name, ou string, server bool) identity {
	now := time.Now()
	return p.issue(t, file, name, ou, server, now.Add(-time.Hour), now.AddDate(1, 0, 0))
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

const testACL = `# trucks: their own telemetry, events and status; their own orders
pattern write fleet/trucks/%u/telemetry
pattern write fleet/trucks/%u/events
pattern write fleet/trucks/%u/status
pattern read fleet/trucks/%u/orders/#

user dispatch-1
topic read fleet/trucks/#
topic write fleet/trucks/+/orders/#
`

// mosquitto is a real Mosquitto broker with mutual TLS on a free loopback port.
type mosquitto struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	conf   string
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    *syncBuffer
}

type brokerOpts struct {
	maxInflight   int       // max_inflight_messages; 0: Mosquitto's default (20)
	maxPacketSize int       // max_packet_size; 0: unlimited
	serverCert    *identity // nil: a valid one is issued
}

func startMosquitto(t testing.TB, p *testPKI, o brokerOpts) *mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/mosquitto"); serr != nil {
			t.Fatal("mosquitto not found: apt-get install mosquitto")
		}
		bin = "/usr/sbin/mosquitto"
	}
	dir := t.TempDir()
	sc := o.serverCert
	if sc == nil {
		id := p.valid(t, "broker", "broker", "broker", true)
		sc = &id
	}
	m := &mosquitto{t: t, bin: bin, dir: dir, port: freePort(t), log: &syncBuffer{}}
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte(testACL), 0o600); err != nil {
		t.Fatal(err)
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "per_listener_settings false\nallow_anonymous false\npersistence false\n")
	fmt.Fprintf(&conf, "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\nlog_type information\n")
	if u, err := user.Current(); err == nil {
		fmt.Fprintf(&conf, "user %s\n", u.Username) // as root Mosquitto would switch to "mosquitto" and lose our files
	}
	if o.maxPacketSize > 0 {
		fmt.Fprintf(&conf, "max_packet_size %d\n", o.maxPacketSize)
	}
	if o.maxInflight > 0 {
		fmt.Fprintf(&conf, "max_inflight_messages %d\n", o.maxInflight)
	}
	fmt.Fprintf(&conf, "acl_file %s\n", acl)
	fmt.Fprintf(&conf, "listener %d 127.0.0.1\n", m.port)
	fmt.Fprintf(&conf, "cafile %s\ncertfile %s\nkeyfile %s\n", p.caFile(), sc.certFile, sc.keyFile)
	fmt.Fprintf(&conf, "require_certificate true\nuse_identity_as_username true\nuse_username_as_clientid true\n")
	fmt.Fprintf(&conf, "tls_version tlsv1.2\n")
	m.conf = filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(m.conf, []byte(conf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	m.start()
	t.Cleanup(func() {
		m.kill()
		if t.Failed() {
			t.Logf("mosquitto log:\n%s", m.log.String())
		}
	})
	return m
}

func (m *mosquitto) start() {
	m.t.Helper()
	cmd := exec.Command(m.bin, "-c", m.conf)
	cmd.Stderr, cmd.Stdout = m.log, m.log
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("starting mosquitto (apt-get install mosquitto): %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.mu.Lock()
	m.cmd, m.exited = cmd, exited
	m.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.addr(), time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case <-exited:
			m.t.Fatalf("mosquitto exited at start:\n%s", m.log.String())
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto did not listen on %s:\n%s", m.addr(), m.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the broker with SIGKILL (no clean shutdown) and waits for it.
func (m *mosquitto) kill() {
	m.mu.Lock()
	cmd, exited := m.cmd, m.exited
	m.cmd = nil
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

func (m *mosquitto) addr() string { return fmt.Sprintf("127.0.0.1:%d", m.port) }
func (m *mosquitto) url() string  { return "mqtts://" + m.addr() }

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLogger logs to t (shown when a test fails).
func testLogger(t testing.TB, name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("conn", name)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// clientConfig is a fast-reconnecting configuration for identity id of name against brokers.
func clientConfig(t testing.TB, p *testPKI, id identity, name string, brokers ...string) Config {
	return Config{
		Brokers:        brokers,
		ClientID:       name,
		CertFile:       id.certFile,
		KeyFile:        id.keyFile,
		CAFile:         p.caFile(),
		BackoffMin:     50 * time.Millisecond,
		BackoffMax:     300 * time.Millisecond,
		ConnectTimeout: 10 * time.Second,
		Logger:         testLogger(t, name),
	}
}

// running starts c.Run and stops it at cleanup, failing the test if Run does not return.
func running(t testing.TB, c *Conn) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return 15 s after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newConn(t testing.TB, cfg Config) *Conn {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitUp(t testing.TB, c *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Wait(ctx); err != nil {
		t.Fatalf("link not up: %v (last state %+v)", err, c.Current())
	}
}

// waitState reads states until one satisfies ok.
func waitState(t testing.TB, c *Conn, what string, ok func(State) bool) State {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case s := <-c.States():
			if ok(s) {
				return s
			}
		case <-timeout:
			t.Fatalf("no state %s within 20 s (last %+v)", what, c.Current())
		}
	}
}

// inbox collects messages received by a Conn's OnPublish.
type inbox chan Message

func (in inbox) handler(_ context.Context, m Message) error {
	in <- m
	return nil
}

func (in inbox) expect(t testing.TB, topic, payload string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m := <-in:
			if m.Topic == topic && string(m.Payload) == payload {
				return
			}
			t.Logf("skipping %s %q while waiting for %s %q", m.Topic, m.Payload, topic, payload)
		case <-timeout:
			t.Fatalf("no message %s %q within 20 s", topic, payload)
		}
	}
}

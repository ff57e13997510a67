package sdktest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/brokeradmin"
	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/devbroker"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// Kind names a broker implementation, for tests that run the same cases against both.
type Kind string

const (
	Mosquitto Kind = "mosquitto" // Debian's /usr/sbin/mosquitto with brokerconf's configuration
	DevBroker Kind = "devbroker" // the embedded development broker (sdk/devbroker)
)

// Kinds lists both implementations, Mosquitto first.
var Kinds = []Kind{Mosquitto, DevBroker}

// BrokerName is the broker certificate's name in a PKI made by these helpers.
const BrokerName = "test-broker"

// startTimeout bounds how long a broker may take to accept connections.
const startTimeout = 10 * time.Second

// Options configures a test broker. The zero value is a new PKI in t.TempDir() and default settings.
type Options struct {
	// PKI is used if set; it must hold a broker certificate named BrokerName or exactly one broker.
	// nil means a new PKI with a broker certificate.
	PKI *pki.PKI
	// Dispatch names dispatch identities issued before the broker starts (no reload needed later).
	Dispatch []string
	// Config overrides brokerconf settings for Mosquitto (Port, Bind, InstallDir and User are set by the
	// helper); its ACL prefix and MaxInflight apply to the development broker too.
	Config brokerconf.Config
}

// Broker is a running test broker. It is stopped when the test ends.
type Broker struct {
	Kind Kind
	PKI  *pki.PKI
	Addr string // host:port on loopback
	Dir  string // Mosquitto: the generated broker directory (mosquitto.conf, acl, certs, data)

	t    testing.TB
	opts Options
	port int

	mu sync.Mutex // guards the fields below
	// Mosquitto
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *SyncBuffer
	// development broker
	cancel context.CancelFunc
	served chan error
}

// Start starts a broker of the given kind.
func Start(t testing.TB, kind Kind, opts Options) *Broker {
	t.Helper()
	switch kind {
	case Mosquitto:
		return StartMosquitto(t, opts)
	case DevBroker:
		return StartDevBroker(t, opts)
	}
	t.Fatalf("sdktest: unknown broker kind %q", kind)
	return nil
}

// StartMosquitto starts the real Mosquitto on a free loopback port with the PKI and the configuration that
// our own tools generate, waits until it accepts connections and stops it when the test ends. It fails
// the test, with the install command, when Mosquitto is not installed.
func StartMosquitto(t testing.TB, opts Options) *Broker {
	t.Helper()
	b := newBroker(t, Mosquitto, opts)
	b.Dir = filepath.Join(t.TempDir(), "broker")
	b.writeConfig(false)
	b.Start()
	t.Cleanup(b.stop)
	return b
}

// StartDevBroker starts the development broker on a free loopback port and stops it when the test ends.
func StartDevBroker(t testing.TB, opts Options) *Broker {
	t.Helper()
	b := newBroker(t, DevBroker, opts)
	b.Start()
	t.Cleanup(b.stop)
	return b
}

func newBroker(t testing.TB, kind Kind, opts Options) *Broker {
	t.Helper()
	p := opts.PKI
	if p == nil {
		var err error
		p, err = pki.Init(pki.Config{Dir: filepath.Join(t.TempDir(), "pki")}, pki.CAOptions{Fleet: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Issue(pki.RoleBroker, BrokerName, pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range opts.Dispatch {
		if _, err := p.Issue(pki.RoleDispatch, name, pki.IssueOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	port := FreePort(t)
	return &Broker{Kind: kind, PKI: p, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), t: t, opts: opts, port: port}
}

func (b *Broker) brokerName() string {
	if b.opts.Config.BrokerName != "" {
		return b.opts.Config.BrokerName
	}
	if names, _ := b.PKI.Names(pki.RoleBroker); len(names) == 1 {
		return names[0]
	}
	return BrokerName
}

// MosquittoPath returns the Mosquitto binary, or fails the test with the install command.
func MosquittoPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	t.Fatal("sdktest: mosquitto is not installed: apt-get install mosquitto")
	return ""
}

// ClientTool returns the path of mosquitto_pub or mosquitto_sub, or fails with the install command.
func ClientTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("sdktest: %s is not installed: apt-get install mosquitto-clients", name)
	}
	return p
}

// writeConfig writes the configuration; reset also rewrites the access file from the PKI (with Mosquitto
// stopped: while it runs, the file is its own).
func (b *Broker) writeConfig(reset bool) {
	b.t.Helper()
	cfg := b.opts.Config
	cfg.ResetAccess = cfg.ResetAccess || reset
	cfg.Port = b.port
	cfg.Bind = "127.0.0.1"
	cfg.InstallDir = ""
	cfg.BrokerName = b.brokerName()
	if os.Geteuid() == 0 {
		cfg.User = "root" // Mosquitto would drop to "mosquitto", which cannot read t.TempDir()
	}
	if _, err := brokerconf.Write(b.PKI, b.Dir, cfg); err != nil {
		b.t.Fatal(err)
	}
}

// ConfPath returns the generated mosquitto.conf (Mosquitto only).
func (b *Broker) ConfPath() string { return filepath.Join(b.Dir, brokerconf.ConfFile) }

// Start starts the broker again after Kill or Stop (it is started already by StartMosquitto and
// StartDevBroker), on the same port, keeping Mosquitto's persistence directory.
func (b *Broker) Start() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.Kind {
	case Mosquitto:
		if b.cmd != nil {
			b.t.Fatal("sdktest: mosquitto already running")
		}
		b.logs = &SyncBuffer{}
		cmd := exec.Command(MosquittoPath(b.t), "-c", b.ConfPath())
		cmd.Stdout, cmd.Stderr = b.logs, b.logs
		if err := cmd.Start(); err != nil {
			b.t.Fatalf("sdktest: start mosquitto: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }() // owned: stopLocked waits on exited
		b.cmd, b.exited = cmd, exited
		if err := waitListening(b.Addr, exited); err != nil {
			b.stopLocked(syscall.SIGKILL)
			b.t.Fatalf("sdktest: mosquitto did not start: %v\n%s", err, b.logs.String())
		}
	case DevBroker:
		if b.cancel != nil {
			b.t.Fatal("sdktest: development broker already running")
		}
		cfg, err := devbroker.FromPKI(b.PKI, b.brokerName())
		if err != nil {
			b.t.Fatal(err)
		}
		cfg.Addr = b.Addr
		cfg.ACL = b.opts.Config.ACL
		cfg.ReceiveMaximum = b.opts.Config.MaxInflight
		srv, err := devbroker.New(cfg)
		if err != nil {
			b.t.Fatal(err)
		}
		var lerr error
		for deadline := time.Now().Add(startTimeout); ; time.Sleep(50 * time.Millisecond) {
			if lerr = srv.Listen(); lerr == nil || time.Now().After(deadline) {
				break // the port may linger for a moment after a restart
			}
		}
		if lerr != nil {
			b.t.Fatal(lerr)
		}
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ctx) }() // owned: stopLocked waits on served
		b.cancel, b.served = cancel, served
	}
}

// Stop stops the broker gracefully (Mosquitto: SIGTERM, which writes its persistence file).
func (b *Broker) Stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked(syscall.SIGTERM)
}

// Kill stops the broker abruptly: kill -9 for Mosquitto (persistence keeps only the last autosave), and
// for the development broker, which keeps no state on disk, the same as Stop.
func (b *Broker) Kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked(syscall.SIGKILL)
}

// Restart is Stop followed by Start.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.Start()
}

// Reload regenerates Mosquitto's configuration and CRL copy from the PKI and sends SIGHUP, then waits
// until Mosquitto has reloaded (its TLS listener then refuses revoked certificates). The development
// broker needs nothing (it watches the CRL file).
func (b *Broker) Reload() {
	b.t.Helper()
	if b.Kind != Mosquitto {
		return
	}
	b.writeConfig(false)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cmd == nil {
		return
	}
	before := strings.Count(b.logs.String(), "Reloading config")
	if err := b.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		b.t.Fatalf("sdktest: SIGHUP: %v", err)
	}
	deadline := time.Now().Add(startTimeout)
	for strings.Count(b.logs.String(), "Reloading config") == before {
		if time.Now().After(deadline) {
			b.t.Fatalf("sdktest: mosquitto did not reload:\n%s", b.logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the log line comes before the reload finishes
}

// Logs returns what Mosquitto has written since its last start (empty for the development broker).
func (b *Broker) Logs() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.logs == nil {
		return ""
	}
	return b.logs.String()
}

func (b *Broker) stop() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stopLocked(syscall.SIGTERM)
}

func (b *Broker) stopLocked(sig syscall.Signal) {
	switch {
	case b.cmd != nil:
		b.cmd.Process.Signal(sig)
		select {
		case <-b.exited:
		case <-time.After(startTimeout):
			b.cmd.Process.Kill()
			<-b.exited
		}
		b.cmd, b.exited = nil, nil
	case b.cancel != nil:
		b.cancel()
		if err := <-b.served; err != nil {
			b.t.Errorf("sdktest: development broker: %v", err)
		}
		b.cancel, b.served = nil, nil
	}
}

// Client is a certificate issued for a test and the files a client needs.
type Client struct {
	Name                      string
	Role                      pki.Role
	CAFile, CertFile, KeyFile string
}

// Issue issues a certificate in the broker's PKI. A running Mosquitto learns the new identity at once,
// as `waybill pki issue --broker` tells it: through its dynamic security plugin (Sync).
func (b *Broker) Issue(role pki.Role, name string, opts pki.IssueOptions) Client {
	b.t.Helper()
	if _, err := b.PKI.Issue(role, name, opts); err != nil {
		b.t.Fatal(err)
	}
	b.Sync()
	return b.ClientFiles(name)
}

// Admin connects to Mosquitto as the administrator (pki.MintAdmin); the session closes when the test ends.
func (b *Broker) Admin() *brokeradmin.Admin {
	b.t.Helper()
	if b.Kind != Mosquitto {
		b.t.Fatal("sdktest: only Mosquitto has an administrator")
	}
	cfg, err := brokeradmin.FromPKI(b.PKI, b.Addr, b.opts.Config.ACL)
	if err != nil {
		b.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	a, err := brokeradmin.Dial(ctx, cfg)
	if err != nil {
		b.t.Fatalf("sdktest: %v\n%s", err, b.Logs())
	}
	b.t.Cleanup(func() { a.Close() })
	return a
}

// Sync tells a running Mosquitto every identity of the PKI (brokeradmin.Sync): new ones may connect,
// revoked ones are deleted and their sessions end. A stopped Mosquitto gets a new configuration instead.
// The development broker needs nothing: it reads roles from certificates.
func (b *Broker) Sync() {
	b.t.Helper()
	if b.Kind != Mosquitto {
		return
	}
	b.mu.Lock()
	running := b.cmd != nil
	b.mu.Unlock()
	if !running {
		b.writeConfig(true)
		return
	}
	ids, err := brokerconf.Identities(b.PKI)
	if err != nil {
		b.t.Fatal(err)
	}
	b.asAdmin(func(ctx context.Context, a *brokeradmin.Admin) error {
		_, err := a.Sync(ctx, ids)
		return err
	})
}

// asAdmin runs f in an administrator session that ends with it, failing the test on an error.
func (b *Broker) asAdmin(f func(context.Context, *brokeradmin.Admin) error) {
	b.t.Helper()
	a := b.Admin()
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := f(ctx, a); err != nil {
		b.t.Fatalf("sdktest: %v\n%s", err, b.Logs())
	}
}

// PublishCRL publishes the PKI's current CRL, retained, on the fleet CRL topic (Mosquitto only).
func (b *Broker) PublishCRL() {
	b.t.Helper()
	crl, err := b.PKI.CRL()
	if err != nil {
		b.t.Fatal(err)
	}
	b.asAdmin(func(ctx context.Context, a *brokeradmin.Admin) error { return a.PublishCRL(ctx, crl.Raw) })
}

// Revoke revokes name in the PKI as `waybill pki revoke --broker` does: for Mosquitto the identity is
// deleted from the running broker (its session ends), the new CRL is published to the fleet and the
// broker's CRL copy reloaded. The development broker watches the CRL file.
func (b *Broker) Revoke(name string) {
	b.t.Helper()
	if _, err := b.PKI.Revoke(name); err != nil {
		b.t.Fatal(err)
	}
	if b.Kind != Mosquitto {
		return
	}
	b.Sync()
	b.PublishCRL()
	b.Reload()
}

// Truck issues a truck certificate valid now.
func (b *Broker) Truck(name string) Client {
	b.t.Helper()
	return b.Issue(pki.RoleTruck, name, pki.IssueOptions{})
}

// Dispatch issues a dispatch certificate valid now (and reloads Mosquitto's ACL).
func (b *Broker) Dispatch(name string) Client {
	b.t.Helper()
	return b.Issue(pki.RoleDispatch, name, pki.IssueOptions{})
}

// ClientFiles returns the files of a name already issued in the broker's PKI.
func (b *Broker) ClientFiles(name string) Client {
	c := Client{Name: name, CAFile: b.PKI.CAPath(), CertFile: b.PKI.CertPath(name), KeyFile: b.PKI.KeyPath(name)}
	if cert, err := pki.LoadCertificate(c.CertFile); err == nil {
		if id, err := pki.IdentityOf(cert); err == nil {
			c.Role = id.Role
		}
	}
	return c
}

// TLSConfig returns a client configuration: the fleet CA as the only root, the client's certificate,
// TLS 1.2 minimum, and "localhost" as the server name (broker certificates carry it).
func (c Client) TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	roots, err := pki.LoadCertPool(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := pki.LoadKeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, ServerName: "localhost"}
}

// Dial opens a mutual-TLS connection to the broker as c (for a paho.Client's Conn). A refused
// certificate may surface here or, with TLS 1.3, only at the first read.
func (b *Broker) Dial(ctx context.Context, cfg *tls.Config) (net.Conn, error) {
	d := tls.Dialer{Config: cfg}
	return d.DialContext(ctx, "tcp", b.Addr)
}

// MosquittoArgs returns mosquitto_pub/mosquitto_sub arguments that connect as c over MQTT v5 with c's
// name as client id.
func (b *Broker) MosquittoArgs(c Client) []string {
	host, port, _ := net.SplitHostPort(b.Addr)
	return []string{"-V", "mqttv5", "-h", host, "-p", port, "--cafile", c.CAFile, "--cert", c.CertFile,
		"--key", c.KeyFile, "-i", c.Name}
}

// RootsOf is a helper for tests that need the CA pool of a PKI.
func RootsOf(t testing.TB, p *pki.PKI) *x509.CertPool {
	t.Helper()
	pool, err := pki.LoadCertPool(p.CAPath())
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

// FreePort returns a TCP port on loopback that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitListening waits until addr accepts TCP connections (Mosquitto listens only once its TLS setup has
// loaded) or the process exits.
func waitListening(addr string, exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-exited:
			return errors.New("mosquitto exited")
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after %s", addr, startTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

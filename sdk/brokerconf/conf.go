package brokerconf

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
)

// Defaults for Config's zero values.
const (
	DefaultPort = 8883
	// DefaultMaxInflight replaces Mosquitto's 20. In MQTT v5 it is also the receive maximum Mosquitto
	// announces to clients, and a client's throughput is at most the window divided by the round trip:
	// 20 through a 100 ms cellular round trip is about 200 messages/s, 1000 about 9,000/s (design.md).
	DefaultMaxInflight = 1000
	// DefaultMaxQueued is the floor of the sized queue limit (QueueLimits) and the development broker's
	// limit: 10 x Mosquitto's 1000 messages kept per offline client, so a truck that was out of coverage
	// for a day finds its orders (the dispatch outbox stays the guarantee).
	DefaultMaxQueued = 10000
	// MaxQueuedCeiling caps the sized limit: about 860 MB of broker memory per absent dispatch session
	// (see QueuedMemoryPerMessage), more than one small broker host should promise.
	MaxQueuedCeiling = 1_000_000
	// DefaultFleetSize and DefaultDispatchOutage size the queue when Config leaves them zero: a thousand
	// trucks, and dispatch away for an hour without losing what the trucks sent meanwhile.
	DefaultFleetSize      = 1000
	DefaultDispatchOutage = time.Hour
	// DefaultTruckMessagesPerHour is what one truck publishes while driving: a telemetry batch every 30 s
	// (120 an hour) plus about 10 delivery events and status changes.
	DefaultTruckMessagesPerHour = 130
	// QueuedBytesPerMessage is the payload budget per queued message behind max_queued_bytes: a 30-60 fix
	// telemetry batch is 500-850 bytes signed, an event less. The byte limit keeps broker memory bounded
	// when payloads are larger than planned (a packet may be up to MaxPacketSize).
	QueuedBytesPerMessage = 1024
	// QueuedMemoryPerMessage is Mosquitto 2.0.11's resident memory per queued message, measured here:
	// 100,000 queued QoS 1 messages of 500 bytes for one offline session grew the process by 86 MB, about
	// 860 bytes each (the payload plus about 360 bytes of bookkeeping). Mosquitto keeps queues in RAM.
	QueuedMemoryPerMessage = 860
	// DefaultMaxPacketSize bounds every packet: a 60-fix batch or an order is a few hundred bytes, so
	// 256 KiB leaves room for growth while refusing garbage early.
	DefaultMaxPacketSize = 256 << 10
	// DefaultAutosave is the persistence snapshot interval (Mosquitto's default is 30 minutes): a kill -9
	// loses at most this much of the broker's queue.
	DefaultAutosave = 10 * time.Second
	// DefaultSessionExpiry drops sessions of clients gone this long, so retired trucks do not keep queues
	// forever.
	DefaultSessionExpiry = 30 * 24 * time.Hour
)

// Files written by Write into its output directory.
const (
	ConfFile    = "mosquitto.conf"
	AccessDir   = "access"                // the plugin's file: Mosquitto must be able to write here
	DynsecFile  = "dynamic-security.json" // in AccessDir: the plugin rewrites it after every change
	CertsDir    = "certs"
	DataDir     = "data"
	BrokerCert  = "broker.crt"
	BrokerKey   = "broker.key"
	CAFileName  = "ca.crt"
	CRLFileName = "crl.pem"
	// SystemdDir/DropInFile is the drop-in for Mosquitto's systemd unit (LimitNOFILE); it belongs in
	// /etc/systemd/system/mosquitto.service.d/.
	SystemdDir = "systemd"
	DropInFile = "mosquitto.service.d/waybill.conf"
)

// Config describes a broker configuration. Zero values are documented per field.
type Config struct {
	// Port is the TLS listener's port; zero means DefaultPort (8883).
	Port int
	// Bind is the address the listener binds to; "" means every interface.
	Bind string
	// ACL holds the topic prefix.
	ACL ACL
	// BrokerName picks the broker certificate from the PKI; "" means the only broker in the index.
	BrokerName string
	// InstallDir is where the output directory will live on the broker host; the generated file refers to
	// certificates, ACL and data through it. "" means the output directory itself (absolute).
	InstallDir string
	// PersistenceDir overrides persistence_location; "" means InstallDir/data.
	PersistenceDir string
	// FleetSize, DispatchOutage and TruckMessagesPerHour size the queue of each client (QueueLimits): what
	// the fleet sends while dispatch is away must fit in dispatch's session queue. Zero means
	// DefaultFleetSize (1000 trucks), DefaultDispatchOutage (1 h) and DefaultTruckMessagesPerHour (130).
	FleetSize            int
	DispatchOutage       time.Duration
	TruckMessagesPerHour int
	// MaxQueued and MaxQueuedBytes, when not zero, replace the sized max_queued_messages and
	// max_queued_bytes. MaxInflight zero means DefaultMaxInflight; MaxPacketSize zero means
	// DefaultMaxPacketSize; Autosave zero means DefaultAutosave; SessionExpiry zero means
	// DefaultSessionExpiry.
	MaxInflight    int
	MaxQueued      int
	MaxQueuedBytes int64
	MaxPacketSize  int
	Autosave       time.Duration
	SessionExpiry  time.Duration
	// DynsecPlugin is the absolute path of Mosquitto's dynamic security plugin on the broker host
	// (`--dynsec-plugin`); "" means the first of DynsecPluginPaths that exists on the host that renders,
	// else Debian's amd64 path. Set it when the broker host is another machine or architecture: Debian's
	// arm64 package has it in /usr/lib/aarch64-linux-gnu/.
	DynsecPlugin string
	// User is the account Mosquitto runs as after start as root; "" leaves Mosquitto's default
	// (DefaultUser, "mosquitto"), which must be able to read certs/ and write data/ and access/.
	User string
	// ResetAccess makes Write replace an existing access/dynamic-security.json with the PKI's identities
	// (`--reset-access`); Write otherwise leaves it to Mosquitto (see Write). Stop Mosquitto first: it
	// reads the file only at start and writes its own state over it after every change.
	ResetAccess bool
	// MaxConnections caps the listener's connections; zero means ConnectionLimit(FleetSize). The file
	// limit in the systemd drop-in (FileLimit) is sized above it.
	MaxConnections int
}

func (c Config) withDefaults() Config {
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = DefaultMaxInflight
	}
	if c.FleetSize == 0 {
		c.FleetSize = DefaultFleetSize
	}
	if c.DispatchOutage == 0 {
		c.DispatchOutage = DefaultDispatchOutage
	}
	if c.TruckMessagesPerHour == 0 {
		c.TruckMessagesPerHour = DefaultTruckMessagesPerHour
	}
	if c.MaxQueued == 0 {
		c.MaxQueued = QueueSize(c.FleetSize, c.DispatchOutage, c.TruckMessagesPerHour)
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = int64(c.MaxQueued) * QueuedBytesPerMessage
	}
	if c.MaxPacketSize == 0 {
		c.MaxPacketSize = DefaultMaxPacketSize
	}
	if c.Autosave == 0 {
		c.Autosave = DefaultAutosave
	}
	if c.SessionExpiry == 0 {
		c.SessionExpiry = DefaultSessionExpiry
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = ConnectionLimit(c.FleetSize)
	}
	return c
}

// ConnectionLimit is max_connections for a fleet: every truck once, again as many for a fleet that grew
// since the configuration was written and for connections a broker restart leaves half-closed, and 100
// for dispatch processes, operators and the administrator. It bounds what an attacker with stolen
// certificates or a reconnect storm can open before the process runs out of file descriptors.
func ConnectionLimit(fleet int) int { return 2*fleet + 100 }

// FileLimit is the LimitNOFILE the broker's service needs for maxConnections: one descriptor per
// connection plus 1024 for its listeners, persistence, logs and the plugin. A stock unit's 1024 stops
// Mosquitto near 1,000 trucks, with "Too many open files" in its log and trucks that cannot connect.
func FileLimit(maxConnections int) int { return maxConnections + 1024 }

func (c Config) validate() error {
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("brokerconf: port %d out of range", c.Port)
	}
	if c.MaxInflight < 1 || c.MaxInflight > 65535 {
		return fmt.Errorf("brokerconf: max inflight %d out of range 1-65535", c.MaxInflight)
	}
	if c.FleetSize < 0 || c.DispatchOutage < 0 || c.TruckMessagesPerHour < 0 {
		return errors.New("brokerconf: fleet size, dispatch outage and truck messages per hour must not be negative")
	}
	if c.MaxConnections < 1 || c.MaxConnections > 10_000_000 {
		return fmt.Errorf("brokerconf: max connections %d out of range 1-10000000", c.MaxConnections)
	}
	if c.MaxQueued < 0 || c.MaxQueuedBytes < 0 || c.MaxPacketSize < 20 || c.Autosave < time.Second || c.SessionExpiry < time.Hour {
		return errors.New("brokerconf: max queued must be >= 0, max packet size >= 20, autosave >= 1s, session expiry >= 1h")
	}
	for _, s := range []string{c.Bind, c.InstallDir, c.PersistenceDir, c.User, c.DynsecPlugin} {
		if strings.ContainsAny(s, "\n\r\x00") {
			return fmt.Errorf("brokerconf: bad value %q", s)
		}
	}
	if c.DynsecPlugin != "" && !filepath.IsAbs(c.DynsecPlugin) {
		return fmt.Errorf("brokerconf: dynamic security plugin %q is not an absolute path", c.DynsecPlugin)
	}
	return c.ACL.Validate()
}

// QueueSize returns max_queued_messages for a fleet: while dispatch is away its persistent session
// collects everything the trucks send, so the queue must hold
//
//	fleet x messages per truck-hour x outage in hours
//
// rounded up, and at least DefaultMaxQueued, at most MaxQueuedCeiling. With the defaults (1000 trucks,
// 130 messages an hour, 1 h) that is 130,000 messages, about 112 MB of Mosquitto's memory per absent
// dispatch session (QueuedMemoryPerMessage).
func QueueSize(fleet int, outage time.Duration, perHour int) int {
	n := math.Ceil(float64(fleet) * float64(perHour) * outage.Hours()) // float: no overflow for silly inputs
	return int(min(max(n, DefaultMaxQueued), MaxQueuedCeiling))
}

// Render returns mosquitto.conf for cfg, whose paths point into cfg.InstallDir (which must be set).
func Render(cfg Config) ([]byte, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(cfg.InstallDir) {
		return nil, fmt.Errorf("brokerconf: install directory %q is not absolute", cfg.InstallDir)
	}
	dir := cfg.InstallDir
	certs := filepath.Join(dir, CertsDir)
	data := cfg.PersistenceDir
	if data == "" {
		data = filepath.Join(dir, DataDir)
	}
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Waybill broker configuration, generated by `waybill broker config`. Regenerate rather than edit.")
	w("# After `waybill pki issue` or `revoke`, the command itself tells the running broker through the")
	w("# dynamic security plugin (or run `waybill broker sync`); regenerate and send SIGHUP too, so the")
	w("# broker's copy of the CRL refuses revoked certificates at the TLS handshake.")
	w("")
	w("# Only certificate holders: the CN is the username and the client id, so nobody can take over")
	w("# another party's session by reusing its client id.")
	w("per_listener_settings false")
	w("allow_anonymous false")
	w("")
	w("# Access rules: the dynamic security plugin, one client and one role per identity (brokerconf.ACL).")
	w("# It refuses subscriptions outside an identity's rights (Mosquitto's acl_file grants every")
	w("# subscription), and its $CONTROL topic lets `waybill pki revoke` end a revoked identity's session.")
	w("# It reads %s only at start and rewrites it after every change.", DynsecFile)
	w("plugin %s", cfg.PluginPath())
	w("plugin_opt_config_file %s", filepath.Join(dir, AccessDir, DynsecFile))
	if cfg.User != "" {
		w("user %s", cfg.User)
	}
	w("")
	w("# Flow: a receive maximum of %d (Mosquitto's default 20 caps a client near 200 messages/s through a", cfg.MaxInflight)
	w("# 100 ms round trip), a deeper queue per offline client, and a bound on packet size.")
	w("max_inflight_messages %d", cfg.MaxInflight)
	w("#")
	w("# Queue per client (Mosquitto's default is 1000 messages). While dispatch is away its session")
	w("# collects what every truck sends: fleet x messages per truck-hour x outage = %d x %d x %s",
		cfg.FleetSize, cfg.TruckMessagesPerHour, hours(cfg.DispatchOutage))
	w("# = %d messages, kept between %d and %d (QueueSize)%s.", QueueSize(cfg.FleetSize, cfg.DispatchOutage, cfg.TruckMessagesPerHour),
		DefaultMaxQueued, MaxQueuedCeiling, overridden(cfg.MaxQueued != QueueSize(cfg.FleetSize, cfg.DispatchOutage, cfg.TruckMessagesPerHour)))
	w("# Mosquitto keeps queues in RAM: about %d bytes per queued message of 500 bytes (measured on", QueuedMemoryPerMessage)
	w("# 2.0.11), so a full queue is about %d MB per absent dispatch session; max_queued_bytes (payload", (int64(cfg.MaxQueued)*QueuedMemoryPerMessage+5e5)/1e6)
	w("# bytes, %d per message on average) bounds it when messages are larger than planned. Messages", QueuedBytesPerMessage)
	w("# beyond either limit are dropped with a NOTICE \"Outgoing messages are being dropped\"; the trucks'")
	w("# stores keep them until dispatch's signed receipt, so they are sent again, not lost.")
	w("max_queued_messages %d", cfg.MaxQueued)
	w("max_queued_bytes %d", cfg.MaxQueuedBytes)
	w("max_packet_size %d", cfg.MaxPacketSize)
	w("persistent_client_expiration %dh", int(cfg.SessionExpiry/time.Hour))
	w("retain_available true")
	w("set_tcp_nodelay true")
	w("")
	w("# Persistence is a periodic snapshot: a kill -9 loses up to autosave_interval of queued messages.")
	w("# Each snapshot writes every queue whole: during a dispatch outage a full queue is written again")
	w("# every autosave_interval (size the data disk for the queues, and its write rate too).")
	w("persistence true")
	w("persistence_location %s/", data)
	w("autosave_interval %d", int(cfg.Autosave/time.Second))
	w("")
	w("log_dest stderr")
	w("log_type error")
	w("log_type warning")
	w("log_type notice")
	w("log_type information")
	w("connection_messages true")
	w("log_timestamp_format %%Y-%%m-%%dT%%H:%%M:%%S")
	w("")
	w("# Mutual TLS, 1.2 minimum, client certificates from the fleet CA only, revocations honoured.")
	if cfg.Bind != "" {
		w("listener %d %s", cfg.Port, cfg.Bind)
	} else {
		w("listener %d", cfg.Port)
	}
	w("# At most %d connections (2 x %d trucks + 100, ConnectionLimit); the service needs a file limit", cfg.MaxConnections, cfg.FleetSize)
	w("# of %d: install %s/%s (LimitNOFILE).", FileLimit(cfg.MaxConnections), SystemdDir, DropInFile)
	w("max_connections %d", cfg.MaxConnections)
	w("protocol mqtt")
	w("cafile %s", filepath.Join(certs, CAFileName))
	w("certfile %s", filepath.Join(certs, BrokerCert))
	w("keyfile %s", filepath.Join(certs, BrokerKey))
	w("crlfile %s", filepath.Join(certs, CRLFileName))
	w("require_certificate true")
	w("use_identity_as_username true")
	w("use_username_as_clientid true")
	w("tls_version tlsv1.2")
	w("ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305")
	return b.Bytes(), nil
}

// DynsecPluginPaths are where distributions install Mosquitto's dynamic security plugin.
var DynsecPluginPaths = []string{
	"/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
	"/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
	"/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so",
	"/usr/lib/mosquitto_dynamic_security.so",
	"/usr/local/lib/mosquitto_dynamic_security.so",
	"/usr/lib64/mosquitto_dynamic_security.so",
}

// PluginPath returns the dynamic security plugin mosquitto.conf loads: DynsecPlugin, else the first of
// DynsecPluginPaths on this host, else the first of them.
func (c Config) PluginPath() string {
	if c.DynsecPlugin != "" {
		return c.DynsecPlugin
	}
	for _, p := range DynsecPluginPaths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return DynsecPluginPaths[0]
}

// hours formats an outage for the comment: "1h", "1.5h".
func hours(d time.Duration) string { return strconv.FormatFloat(d.Hours(), 'f', -1, 64) + "h" }

func overridden(yes bool) string {
	if yes {
		return "; overridden by the configuration"
	}
	return ""
}

// Result says what Write wrote.
type Result struct {
	ConfPath   string         // OUT/mosquitto.conf
	DynsecPath string         // OUT/access/dynamic-security.json
	DropInPath string         // OUT/systemd/mosquitto.service.d/waybill.conf: LimitNOFILE for the unit
	Plugin     string         // the dynamic security plugin mosquitto.conf loads (Config.PluginPath)
	Broker     string         // the broker certificate's name
	Identities []pki.Identity // the clients the PKI lets in: trucks, dispatch, the administrator
	// Replaced: OUT held a mosquitto.conf already, so a Mosquitto may be running from it (reload it).
	Replaced bool
	// DynsecKept: DynsecPath existed and was left as it is (Write's doc says why).
	DynsecKept bool
	// Chown is the `chown -R USER: DIR` to run before Mosquitto starts or reloads, or "" when it would
	// change nothing: Mosquitto stays root, or everything in OUT is its user's already.
	Chown string
}

// Write renders the configuration and ACL from p into outDir, and copies there what the broker needs
// from the PKI (never the CA key): certs/ca.crt, certs/crl.pem, certs/broker.crt and certs/broker.key
// (0600). data/ is created for persistence, access/ for the dynamic security file (Dynsec) listing every
// truck and dispatch identity with a valid certificate, and the administrator. A broker that loses its
// persistence keeps its identities.
//
// Write is run again into the directory a Mosquitto runs from (after a revoke or `pki crl`, for the CRL
// copy). Every file it replaces keeps the owner, group and mode of the one before, and a new file or
// directory gets the owner and group of its directory: after `chown -R mosquitto: OUT` once, a root
// `waybill broker config` leaves everything Mosquitto's.
//
// An existing access/dynamic-security.json is left alone unless cfg.ResetAccess: at run time it is
// Mosquitto's. The plugin reads it only at start and writes its memory over it after every change, so it
// holds what `pki issue|revoke --broker` and `broker sync` told the broker, and what an operator changed
// with mosquitto_ctrl (a client disabled at once while its revocation waits). A rendering of the PKI
// written under a running broker is either overwritten at its next change or, at its next start, undoes
// what it was told meanwhile (an identity issued between the render and the rename drops out). The PKI
// reaches a broker through `waybill broker sync`, which goes through Mosquitto and says what it changed.
func Write(p *pki.PKI, outDir string, cfg Config) (Result, error) {
	abs, err := filepath.Abs(outDir)
	if err != nil {
		return Result{}, fmt.Errorf("brokerconf: %w", err)
	}
	if cfg.InstallDir == "" {
		cfg.InstallDir = abs
	}
	broker, err := pickBroker(p, cfg.BrokerName)
	if err != nil {
		return Result{}, err
	}
	ids, err := Identities(p)
	if err != nil {
		return Result{}, err
	}
	conf, err := Render(cfg)
	if err != nil {
		return Result{}, err
	}
	dynsec, err := cfg.ACL.Dynsec(ids)
	if err != nil {
		return Result{}, err
	}
	if err := pki.CheckCRLFile(p.CRLPath(), time.Now(), time.Nanosecond); err != nil {
		return Result{}, fmt.Errorf("brokerconf: refusing to install a stale CRL (run `waybill pki crl`): %w", err)
	}
	res := Result{ConfPath: filepath.Join(abs, ConfFile), DynsecPath: filepath.Join(abs, AccessDir, DynsecFile),
		DropInPath: filepath.Join(abs, SystemdDir, DropInFile), Broker: broker, Identities: ids, Plugin: cfg.PluginPath()}
	if _, err := os.Stat(res.ConfPath); err == nil {
		res.Replaced = true
	}
	if _, err := os.Stat(res.DynsecPath); err == nil && !cfg.ResetAccess {
		res.DynsecKept = true
	}
	if err := os.MkdirAll(abs, 0o755); err != nil { // the top keeps the creator's owner: chown -R gives it away
		return Result{}, fmt.Errorf("brokerconf: %w", err)
	}
	for _, d := range []struct {
		path string
		perm os.FileMode
	}{{CertsDir, 0o750}, {DataDir, 0o750}, {AccessDir, 0o750}, {SystemdDir, 0o755}, {filepath.Join(SystemdDir, filepath.Dir(DropInFile)), 0o755}} {
		if err := ensureDir(filepath.Join(abs, d.path), d.perm); err != nil {
			return Result{}, err
		}
	}
	copies := []struct {
		from, to string
		perm     os.FileMode
	}{
		{p.CAPath(), CAFileName, 0o644},
		{p.CRLPath(), CRLFileName, 0o644},
		{p.CertPath(broker), BrokerCert, 0o644},
		{p.KeyPath(broker), BrokerKey, 0o600},
	}
	for _, c := range copies {
		if c.perm == 0o600 {
			if err := pki.CheckKeyFile(c.from); err != nil {
				return Result{}, err
			}
		}
		data, err := os.ReadFile(c.from)
		if err != nil {
			return Result{}, fmt.Errorf("brokerconf: %w", err)
		}
		if err := writeFile(filepath.Join(abs, CertsDir, c.to), data, c.perm); err != nil {
			return Result{}, err
		}
	}
	if !res.DynsecKept {
		if err := writeFile(res.DynsecPath, dynsec, 0o600); err != nil {
			return Result{}, err
		}
	}
	if err := writeFile(res.ConfPath, conf, 0o644); err != nil {
		return Result{}, err
	}
	if err := writeFile(res.DropInPath, RenderDropIn(cfg), 0o644); err != nil { // cfg.InstallDir is set above
		return Result{}, err
	}
	res.Chown = chownCommand(abs, cfg)
	return res, nil
}

// MosquittoBinary is where Debian's mosquitto package installs the broker; the systemd drop-in starts it.
const MosquittoBinary = "/usr/sbin/mosquitto"

// RenderDropIn returns the systemd drop-in for Debian's mosquitto.service: it starts Mosquitto with this
// configuration (the stock unit starts /etc/mosquitto/mosquitto.conf) and raises its file limit to what
// cfg's max_connections needs (FileLimit).
func RenderDropIn(cfg Config) []byte {
	cfg = cfg.withDefaults()
	return fmt.Appendf(nil, `# Generated by `+"`waybill broker config`"+`: Mosquitto with this configuration, and its file limit
# for max_connections %d.
# Install: cp -r %s /etc/systemd/system/ && systemctl daemon-reload && systemctl restart mosquitto
[Service]
ExecStart=
ExecStart=%s -c %s
LimitNOFILE=%d
`, cfg.MaxConnections, filepath.Join(cfg.InstallDir, SystemdDir, filepath.Dir(DropInFile)), MosquittoBinary,
		filepath.Join(cfg.InstallDir, ConfFile), FileLimit(cfg.MaxConnections))
}

// Identities returns who the broker lets in: every truck and dispatch name with a valid certificate in
// p, and the administrator (pki.AdminName).
func Identities(p *pki.PKI) ([]pki.Identity, error) {
	var ids []pki.Identity
	for _, role := range []pki.Role{pki.RoleTruck, pki.RoleDispatch} {
		names, err := p.Names(role)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			ids = append(ids, pki.Identity{Name: n, Role: role})
		}
	}
	return append(ids, pki.Identity{Name: pki.AdminName, Role: pki.RoleAdmin}), nil
}

// pickBroker returns name if it is a valid broker certificate, or the only one when name is "".
func pickBroker(p *pki.PKI, name string) (string, error) {
	brokers, err := p.Names(pki.RoleBroker)
	if err != nil {
		return "", err
	}
	switch {
	case name != "":
		for _, b := range brokers {
			if b == name {
				return name, nil
			}
		}
		return "", fmt.Errorf("brokerconf: no valid broker certificate %q in %s (waybill pki issue --role broker %s)", name, p.Dir(), name)
	case len(brokers) == 1:
		return brokers[0], nil
	case len(brokers) == 0:
		return "", fmt.Errorf("brokerconf: no broker certificate in %s: run `waybill pki issue --role broker NAME [--host HOST]` first", p.Dir())
	default:
		return "", fmt.Errorf("brokerconf: several broker certificates in %s (%s): pick one by name", p.Dir(), strings.Join(brokers, ", "))
	}
}

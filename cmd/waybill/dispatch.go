package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/office"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/embedded"
	"github.com/waybill-iot/waybill/sdk/dispatch/storage/postgres"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/transport"
)

// dispatchConfig is `waybill dispatch run`'s TOML file. Every field says what its zero value means;
// durations are strings with a unit ("30s", "15m"): a bare number is refused.
type dispatchConfig struct {
	Broker struct {
		// URLs of the broker(s), mqtts://HOST:PORT. Required.
		URLs []string `toml:"urls"`
		// Cert, Key and CA: the dispatch identity and the fleet CA (PEM files). Required.
		Cert string `toml:"cert"`
		Key  string `toml:"key"`
		CA   string `toml:"ca"`
		// CRL is the fleet CRL file. Zero: none until the broker's retained CRL arrives.
		CRL string `toml:"crl"`
		// Issued is a directory of issued certificates (the PKI's issued/), so trucks' telemetry verifies from
		// its first message. Zero: trucks' certificates are learned from their messages.
		Issued string `toml:"issued"`
		// Prefix is the topic prefix. Zero: "fleet".
		Prefix string `toml:"prefix"`
		// ShareGroup splits telemetry and events between the processes of one group (MQTT v5 shared
		// subscriptions): give every process on one PostgreSQL database the same unguessable name (see
		// dispatch.RandomShareGroup). Zero: not shared (one process).
		ShareGroup string `toml:"share_group"`
	} `toml:"broker"`
	Storage struct {
		// Engine is "embedded" (bbolt files in data_dir, one process) or "postgres". Zero: "embedded".
		Engine string `toml:"engine"`
		// DataDir is the embedded engine's directory (archive.db, outbox.db; the one `waybill order --data`
		// uses). Zero: /var/lib/waybill-dispatch.
		DataDir string `toml:"data_dir"`
		// DSN is PostgreSQL's connection string (engine "postgres"). Env WAYBILL_DISPATCH_DSN overrides it,
		// so a password need not be in the file.
		DSN string `toml:"dsn"`
	} `toml:"storage"`
	HTTP struct {
		// Listen is the API's address. Zero: 127.0.0.1:8470 (loopback only).
		Listen string `toml:"listen"`
		// TokenFile holds the API's bearer token (at least 16 characters; not readable by group or others).
		// Required unless client_ca is set; env WAYBILL_DISPATCH_TOKEN overrides it.
		TokenFile string `toml:"token_file"`
		// TLSCert and TLSKey are the API's server certificate and key (PEM): the API speaks HTTPS. Zero:
		// plain HTTP (keep it on loopback, or behind a TLS proxy).
		TLSCert string `toml:"tls_cert"`
		TLSKey  string `toml:"tls_key"`
		// ClientCA is a CA file (the fleet CA) whose dispatch-role client certificates authenticate API
		// requests instead of the token; revoked ones are refused (the broker section's CRL, then each
		// newer fleet CRL). Needs tls_cert. Zero: the token only.
		ClientCA string `toml:"client_ca"`
		// TileURL is the maps' tile URL template ({z}/{x}/{y}); TileAttribution is shown with the tiles.
		// Zero: no tiles (a degree grid and a scale).
		TileURL         string `toml:"tile_url"`
		TileAttribution string `toml:"tile_attribution"`
		// PublicURL is where customers reach the tracking pages (/t/TOKEN). Zero: the API's address.
		PublicURL string `toml:"public_url"`
		// MaxStreams bounds the console's open live-update streams. Zero: 32.
		MaxStreams int `toml:"max_streams"`
		// TrackingRate and TrackingBurst limit the public pages (/t/ and the files they load) per client: a
		// token bucket of tracking_burst requests refilled at tracking_rate ("60/min"; per s, min or h),
		// 429 with Retry-After beyond. Zero: "60/min" and 30.
		TrackingRate  office.Rate `toml:"tracking_rate"`
		TrackingBurst int         `toml:"tracking_burst"`
		// TrackingClients bounds the clients the limit remembers (the least recently seen forgotten
		// first). Zero: 10000.
		TrackingClients int `toml:"tracking_clients"`
		// TrustedProxies are addresses or prefixes of proxies whose X-Forwarded-For names the client. Zero:
		// none (behind a proxy, every customer then shares the proxy's limit).
		TrustedProxies []string `toml:"trusted_proxies"`
	} `toml:"http"`
	Archive struct {
		// KeepFixes is how long fixes are kept ("400d", or a duration like "720h"; at least "7d"): older
		// ones are deleted hourly. Events, proofs of delivery, statuses and orders are never deleted.
		// Zero: for ever.
		KeepFixes retention `toml:"keep_fixes"`
	} `toml:"archive"`
	Orders struct {
		// BackoffMin and BackoffMax bound the wait between sends of an unconfirmed order. Zero: 30s and 30m.
		BackoffMin duration `toml:"backoff_min"`
		BackoffMax duration `toml:"backoff_max"`
		// OnlineGrace: a truck coming online gets its unconfirmed orders again after this. Zero: 15s.
		OnlineGrace duration `toml:"online_grace"`
		// ReceiptDelay: committed records wait this long so that one receipt covers many. Zero: 30s.
		ReceiptDelay duration `toml:"receipt_delay"`
		// PublishTimeout bounds one send of an order (the broker's acknowledgement). Zero: 30s.
		PublishTimeout duration `toml:"publish_timeout"`
		// RetryDelay is the wait after a failed send. Zero: 5s. On PostgreSQL an order a process claimed is
		// leased to it for publish_timeout + retry_delay: a process that dies holding it delays the order
		// that long, then another process sends it.
		RetryDelay duration `toml:"retry_delay"`
	} `toml:"orders"`
	// LogLevel is debug, info, warn or error. Zero: info.
	LogLevel string `toml:"log_level"`
}

// duration is a TOML string with a unit; a bare number is refused (is 30 seconds or nanoseconds?).
type duration struct{ time.Duration }

func (d *duration) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("a duration needs a unit, as a string: write \"%v s\" as \"%vs\"", v, v)
	}
	x, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %v (write e.g. \"30s\", \"15m\")", s, err)
	}
	if x < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	d.Duration = x
	return nil
}

// retention is a TOML string of whole days ("400d") or a duration with a unit; "0" keeps for ever.
type retention struct{ time.Duration }

func (d *retention) UnmarshalTOML(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("a retention period needs a unit, as a string: write \"%v d\" as \"%vd\"", v, v)
	}
	x, err := office.ParseRetention(s)
	if err != nil {
		return err
	}
	if x != 0 && x < office.MinKeepFixes {
		return fmt.Errorf("retention %q: want \"0\" (for ever) or at least \"7d\"", s)
	}
	d.Duration = x
	return nil
}

func parseDispatchConfig(r io.Reader) (*dispatchConfig, error) {
	var c dispatchConfig
	md, err := toml.NewDecoder(r).Decode(&c)
	if err != nil {
		return nil, err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("unknown keys: %s", strings.Join(keys, ", "))
	}
	if v := os.Getenv("WAYBILL_DISPATCH_DSN"); v != "" {
		c.Storage.DSN = v
	}
	if c.Storage.Engine == "" {
		c.Storage.Engine = "embedded"
	}
	if c.Storage.DataDir == "" {
		c.Storage.DataDir = "/var/lib/waybill-dispatch"
	}
	switch {
	case len(c.Broker.URLs) == 0:
		return nil, errors.New("[broker] urls is required (mqtts://HOST:PORT)")
	case c.Broker.Cert == "" || c.Broker.Key == "" || c.Broker.CA == "":
		return nil, errors.New("[broker] cert, key and ca are required (the dispatch identity and the fleet CA)")
	case c.Storage.Engine != "embedded" && c.Storage.Engine != "postgres":
		return nil, fmt.Errorf("[storage] engine %q: want \"embedded\" or \"postgres\"", c.Storage.Engine)
	case c.Storage.Engine == "postgres" && c.Storage.DSN == "":
		return nil, errors.New("[storage] engine \"postgres\" needs dsn (or env WAYBILL_DISPATCH_DSN)")
	case (c.HTTP.TLSCert == "") != (c.HTTP.TLSKey == ""):
		return nil, errors.New("[http] tls_cert and tls_key go together (the API's HTTPS certificate and key)")
	case c.HTTP.ClientCA != "" && c.HTTP.TLSCert == "":
		return nil, errors.New("[http] client_ca needs tls_cert and tls_key: client certificates come with HTTPS")
	case c.HTTP.TokenFile == "" && os.Getenv("WAYBILL_DISPATCH_TOKEN") == "" && c.HTTP.ClientCA == "":
		return nil, errors.New("[http] token_file is required (or env WAYBILL_DISPATCH_TOKEN, or client_ca for client " +
			"certificates): the API's bearer token")
	}
	if _, err := office.ParseTrustedProxies(c.HTTP.TrustedProxies); err != nil {
		return nil, fmt.Errorf("[http] trusted_proxies: %w", err)
	}
	if c.HTTP.TrackingBurst < 0 || c.HTTP.TrackingClients < 0 {
		return nil, errors.New("[http] tracking_burst and tracking_clients cannot be negative")
	}
	switch c.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return nil, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	return &c, nil
}

func (c *dispatchConfig) token() (string, error) {
	if v := os.Getenv("WAYBILL_DISPATCH_TOKEN"); v != "" {
		return v, nil
	}
	if c.HTTP.TokenFile == "" {
		return "", nil // client certificates only (client_ca)
	}
	if err := pki.CheckKeyFile(c.HTTP.TokenFile); err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	b, err := os.ReadFile(c.HTTP.TokenFile)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func runDispatch(ctx context.Context, s streams, args []string) error {
	if len(args) > 0 && args[0] == "migrate" {
		return runDispatchMigrate(ctx, s, args[1:])
	}
	if len(args) == 0 || args[0] != "run" {
		fmt.Fprintln(s.err, "Usage: waybill dispatch run --config FILE")
		fmt.Fprintln(s.err, "       "+migrateUsage[len("Usage: "):])
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return usageError{"want the subcommand run or migrate"}
	}
	fs := flag.NewFlagSet("dispatch run", flag.ContinueOnError)
	fs.SetOutput(s.err)
	cfgPath := fs.String("config", "", "the TOML configuration (see sdk/dispatch/office/dispatch.example.toml)")
	fs.Usage = func() {
		fmt.Fprintln(s.err, "Usage: waybill dispatch run --config FILE")
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, "The dispatch office: consumes the fleet's telemetry, events and status (verified, committed to the")
		fmt.Fprintln(s.err, "storage before the broker's acknowledgement, receipted to the trucks), re-sends orders until each truck")
		fmt.Fprintln(s.err, "confirms them, and serves the HTTP API (/healthz, /metrics, /api/...) on loopback by default.")
		fmt.Fprintln(s.err, "Storage: embedded (bbolt files in data_dir, one process; `waybill order` and `watch` wait for it) or")
		fmt.Fprintln(s.err, "postgres (several processes with one share_group). Stops gracefully on SIGTERM or Ctrl-C.")
		fmt.Fprintln(s.err)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		return usageError{"give --config FILE and nothing else"}
	}
	cfg, err := loadDispatchConfig(*cfgPath)
	if err != nil {
		return err
	}
	return runOffice(ctx, s, cfg)
}

// identity loads the office's dispatch certificate and key (refusing a key file others can read).
func (c *dispatchConfig) identity() (*x509.Certificate, crypto.Signer, error) {
	if err := pki.CheckKeyFile(c.Broker.Key); err != nil {
		return nil, nil, err
	}
	cert, err := pki.LoadCertificate(c.Broker.Cert)
	if err != nil {
		return nil, nil, err
	}
	key, err := pki.LoadPrivateKey(c.Broker.Key)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// loadDispatchConfig reads and checks the office's configuration file.
func loadDispatchConfig(path string) (*dispatchConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cfg, err := parseDispatchConfig(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

func runOffice(ctx context.Context, s streams, cfg *dispatchConfig) error {
	level := slog.LevelInfo
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: level}))
	token, err := cfg.token()
	if err != nil {
		return err
	}
	topics := sdk.Topics{Prefix: cfg.Broker.Prefix}
	cert, key, err := cfg.identity()
	if err != nil {
		return err
	}
	ca, err := pki.LoadCertificates(cfg.Broker.CA)
	if err != nil {
		return err
	}
	var known []*x509.Certificate
	if cfg.Broker.Issued != "" {
		if known, err = readCertDir(cfg.Broker.Issued); err != nil {
			return err
		}
	}
	var crl *x509.RevocationList
	if cfg.Broker.CRL != "" {
		if crl, err = pki.LoadCRL(cfg.Broker.CRL); err != nil {
			return err
		}
	}
	v, err := sdk.NewVerifier(sdk.VerifierConfig{CA: ca, CRL: crl, Topics: topics, Logger: log})
	if err != nil {
		return err
	}
	for _, c := range known {
		if !c.IsCA {
			_ = v.AddCertificate(c)
		}
	}
	o := cfg.Orders
	var st storage.Store
	switch cfg.Storage.Engine {
	case "embedded":
		if err := os.MkdirAll(cfg.Storage.DataDir, 0o700); err != nil {
			return err
		}
		lock, got, holder, err := tryLock(cfg.Storage.DataDir, "waybill dispatch run")
		if err != nil {
			return err
		}
		if !got {
			return fmt.Errorf("another waybill process%s holds %s: one process sends for a data directory",
				holder, filepath.Join(cfg.Storage.DataDir, senderLock))
		}
		defer lock.release()
		e, err := embedded.Open(embedded.Options{Dir: cfg.Storage.DataDir, Outbox: dispatch.OutboxConfig{
			Certificate: cert, Key: key, Topics: topics, Logger: log, BackoffMin: o.BackoffMin.Duration,
			BackoffMax: o.BackoffMax.Duration, OnlineGrace: o.OnlineGrace.Duration,
			PublishTimeout: o.PublishTimeout.Duration, RetryDelay: o.RetryDelay.Duration}})
		if err != nil {
			return err
		}
		st = e
	case "postgres":
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		p, err := postgres.Open(octx, postgres.Options{DSN: cfg.Storage.DSN, Certificate: cert, Key: key, Topics: topics,
			Logger: log, BackoffMin: o.BackoffMin.Duration, BackoffMax: o.BackoffMax.Duration, OnlineGrace: o.OnlineGrace.Duration,
			PublishTimeout: o.PublishTimeout.Duration, RetryDelay: o.RetryDelay.Duration})
		cancel()
		if err != nil {
			return err
		}
		st = p
	}
	defer st.Close()
	if cfg.HTTP.MaxStreams < 0 {
		return fmt.Errorf("dispatch: http.max_streams = %d: want 0 (the default, 32) or more", cfg.HTTP.MaxStreams)
	}
	proxies, _ := office.ParseTrustedProxies(cfg.HTTP.TrustedProxies) // checked by parseDispatchConfig
	// The certificate files are read by office.New and again when they change (renewals need no restart).
	svc, err := office.New(office.Config{Store: st, Token: token, Listen: cfg.HTTP.Listen, Logger: log,
		TLSCertFile: cfg.HTTP.TLSCert, TLSKeyFile: cfg.HTTP.TLSKey, ClientCAFile: cfg.HTTP.ClientCA,
		TileURL: cfg.HTTP.TileURL, TileAttribution: cfg.HTTP.TileAttribution, PublicURL: cfg.HTTP.PublicURL,
		MaxStreams: cfg.HTTP.MaxStreams, TrackingRate: cfg.HTTP.TrackingRate, TrackingBurst: cfg.HTTP.TrackingBurst,
		TrackingClients: cfg.HTTP.TrackingClients, TrustedProxies: proxies, KeepFixes: cfg.Archive.KeepFixes.Duration,
		Dispatch: dispatch.Config{Transport: transport.Config{Brokers: cfg.Broker.URLs, CertFile: cfg.Broker.Cert,
			KeyFile: cfg.Broker.Key, CAFile: cfg.Broker.CA, CRLFile: cfg.Broker.CRL, Logger: log,
			BackoffMin: 500 * time.Millisecond, BackoffMax: 30 * time.Second},
			Topics: topics, ShareGroup: cfg.Broker.ShareGroup, Verifier: v, ReceiptDelay: o.ReceiptDelay.Duration, Logger: log}})
	if err != nil {
		return err
	}
	scheme := "http"
	if cfg.HTTP.TLSCert != "" {
		scheme = "https"
	}
	fmt.Fprintf(s.out, "waybill dispatch: %s storage, API on %s://%s\n", cfg.Storage.Engine, scheme, svc.Addr())
	return svc.Run(ctx)
}

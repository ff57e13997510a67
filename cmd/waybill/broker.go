package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/devbroker"
	"github.com/waybill-iot/waybill/sdk/pki"
)

const brokerUsage = `Usage: waybill broker COMMAND [flags]

  config --out DIR      write mosquitto.conf, the access rules and the broker's certificates from the PKI
  sync --broker URL     tell each running Mosquitto (URL,URL... for failover brokers) every identity of
                        the PKI (new ones may connect, revoked ones are removed and their sessions
                        closed) and publish the CRL
  run                   run the development broker (same mutual TLS and rules as the Mosquitto config)

Each takes --dir DIR (the PKI; default $WAYBILL_PKI, else ./pki).
`

func runBroker(ctx context.Context, s streams, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(s.err, brokerUsage)
		return usageError{"missing command"}
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(s.out, brokerUsage)
		return nil
	case "config":
		return brokerConfig(s, args[1:])
	case "run":
		return brokerRun(ctx, s, args[1:])
	case "sync":
		return brokerSync(ctx, s, args[1:])
	}
	fmt.Fprint(s.err, brokerUsage)
	return usageError{fmt.Sprintf("unknown broker command %q", args[0])}
}

func brokerConfig(s streams, args []string) error {
	const usage = "Usage: waybill broker config [--dir PKI] --out DIR [--port N] [flags]\n\n" +
		"Writes DIR/mosquitto.conf, DIR/certs/ (CA, CRL, broker certificate and key), DIR/access/\n" +
		"dynamic-security.json (every truck and dispatch identity and its rights), DIR/data/ and DIR/systemd/.\n" +
		"Start Mosquitto with: chown -R mosquitto: DIR && mosquitto -c DIR/mosquitto.conf. While it runs,\n" +
		"`waybill pki issue|revoke --broker URL` (or `waybill broker sync`) tell it about new and revoked\n" +
		"identities; after a revoke or `pki crl`, run this again and send SIGHUP, so its copy of the CRL is\n" +
		"current. Run again, it keeps the owner, group and mode of every file it replaces (a new one gets its\n" +
		"directory's), and leaves an existing dynamic-security.json to Mosquitto, which keeps it itself.\n\n"
	fs := pkiFlagSet("config")
	dir := fs.String("dir", pkiDirDefault(), "PKI directory")
	out := fs.String("out", "", "output directory (required)")
	port := fs.Int("port", brokerconf.DefaultPort, "TLS listener port")
	bind := fs.String("bind", "", "listen address (default: every interface)")
	prefix := fs.String("prefix", brokerconf.DefaultPrefix, "topic prefix")
	name := brokerCertFlag(s, fs)
	install := fs.String("install-dir", "", "where DIR will live on the broker host (default: DIR)")
	user := fs.String("user", "", "user Mosquitto runs as after starting as root (default: Mosquitto's, \"mosquitto\")")
	plugin := fs.String("dynsec-plugin", "", "absolute path of mosquitto_dynamic_security.so on the broker host (default: the one found\n"+
		"on this host; for another machine say where it is there, e.g. Debian arm64: "+brokerconf.DynsecPluginPaths[1]+")")
	inflight := fs.Int("max-inflight", brokerconf.DefaultMaxInflight, "max_inflight_messages: the receive maximum clients get")
	fleet := fs.Int("fleet-size", brokerconf.DefaultFleetSize, "trucks in the fleet: sizes max_queued_messages")
	outage := fs.Duration("dispatch-outage", brokerconf.DefaultDispatchOutage,
		"how long dispatch may be away without the broker dropping what trucks send: sizes max_queued_messages")
	reset := fs.Bool("reset-access", false, "replace an existing access/dynamic-security.json with the PKI's identities (stop Mosquitto\n"+
		"first: it reads the file only at start and writes its own state over it after every change)")
	queued := fs.Int("max-queued", 0, "max_queued_messages per client (default: fleet size x 130 messages an hour x dispatch outage,\n"+
		"between 10000 and 1000000; see the comments in mosquitto.conf)")
	pos, err := parseSubcommandFlags(s, fs, usage, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *out == "" {
		return usageError{"broker config needs --out DIR and no arguments"}
	}
	p, err := openPKI(*dir)
	if err != nil {
		return err
	}
	warnCRL(s, p)
	if err := pickBrokerCert(p, name); err != nil {
		return err
	}
	res, err := brokerconf.Write(p, *out, brokerconf.Config{
		Port: *port, Bind: *bind, ACL: brokerconf.ACL{Prefix: *prefix}, BrokerName: *name,
		InstallDir: *install, User: *user, MaxInflight: *inflight, MaxQueued: *queued,
		FleetSize: *fleet, DispatchOutage: *outage, DynsecPlugin: *plugin, ResetAccess: *reset,
	})
	if err != nil {
		return err
	}
	roles := map[pki.Role]int{}
	for _, id := range res.Identities {
		roles[id.Role]++
	}
	if res.DynsecKept {
		fmt.Fprintf(s.out, "wrote %s, %s and %s (broker certificate %s)\n", res.ConfPath,
			filepath.Join(filepath.Dir(res.ConfPath), brokerconf.CertsDir)+"/", res.DropInPath, res.Broker)
		fmt.Fprintf(s.out, "kept %s: Mosquitto's own, with what `pki issue|revoke --broker` told it; `waybill broker sync "+
			"--broker URL` tells it the PKI's %d trucks and %d dispatch identities (--reset-access rewrites it, Mosquitto stopped)\n",
			res.DynsecPath, roles[pki.RoleTruck], roles[pki.RoleDispatch])
	} else {
		fmt.Fprintf(s.out, "wrote %s and %s (broker certificate %s; %d trucks, %d dispatch identities and the administrator may connect)\n",
			res.ConfPath, res.DynsecPath, res.Broker, roles[pki.RoleTruck], roles[pki.RoleDispatch])
	}
	switch _, err := os.Stat(res.Plugin); {
	case *plugin != "":
		fmt.Fprintf(s.out, "plugin %s (--dynsec-plugin)\n", res.Plugin)
	case err == nil:
		fmt.Fprintf(s.out, "plugin %s: found on this host; for a broker host where it lives elsewhere, give --dynsec-plugin PATH\n", res.Plugin)
	default:
		fmt.Fprintf(s.out, "plugin %s: not found on this host (Debian's amd64 path); give --dynsec-plugin PATH, its path on the broker host\n", res.Plugin)
	}
	chown := ""
	if res.Chown != "" {
		chown = res.Chown + " && " // Mosquitto's user must read certs/ and write access/ and data/
	}
	conf := res.ConfPath
	if *install != "" {
		conf = filepath.Join(*install, brokerconf.ConfFile)
	}
	if res.Replaced && res.DynsecKept {
		// A running Mosquitto re-reads its certificates and the CRL on SIGHUP; the access file is its own.
		fmt.Fprintf(s.out, "reload: %skill -HUP $(pidof mosquitto)   (if it is stopped: %smosquitto -c %s)\n", chown, chown, conf)
	} else {
		// The plugin reads the access file only at start.
		fmt.Fprintf(s.out, "start: %smosquitto -c %s   (a running one must be restarted; after `pki crl` or a revoke, run this "+
			"again: it keeps every file's owner and mode)\n", chown, conf)
	}
	return nil
}

func brokerRun(ctx context.Context, s streams, args []string) error {
	const usage = "Usage: waybill broker run [--dir PKI] [--listen ADDR] [flags]\n\n" +
		"Runs the development MQTT v5 broker: mutual TLS with the fleet CA and CRL, the certificate CN as\n" +
		"username and client id, the same ACL as the Mosquitto configuration. Nothing is kept on disk.\n\n"
	fs := pkiFlagSet("run")
	dir := fs.String("dir", pkiDirDefault(), "PKI directory")
	listen := fs.String("listen", devbroker.DefaultAddr, "TCP listen address")
	prefix := fs.String("prefix", brokerconf.DefaultPrefix, "topic prefix")
	name := brokerCertFlag(s, fs)
	verbose := fs.Bool("v", false, "log every connection")
	pos, err := parseSubcommandFlags(s, fs, usage, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{"broker run takes no arguments"}
	}
	p, err := openPKI(*dir)
	if err != nil {
		return err
	}
	warnCRL(s, p)
	if err := pickBrokerCert(p, name); err != nil {
		return err
	}
	cfg, err := devbroker.FromPKI(p, *name)
	if err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Addr = *listen
	cfg.ACL = brokerconf.ACL{Prefix: *prefix}
	cfg.Logger = slog.New(slog.NewTextHandler(s.err, &slog.HandlerOptions{Level: level}))
	b, err := devbroker.New(cfg)
	if err != nil {
		return err
	}
	if err := b.Listen(); err != nil {
		return err
	}
	fmt.Fprintf(s.out, "development broker listening on %s (mutual TLS, prefix %q); Ctrl-C stops it\n", b.Addr(), *prefix)
	return b.Serve(ctx)
}

func brokerSync(ctx context.Context, s streams, args []string) error {
	const usage = "Usage: waybill broker sync [--dir PKI] --broker URL[,URL...] [--prefix P]\n\n" +
		"Tells each running Mosquitto, through its dynamic security plugin, every truck and dispatch identity\n" +
		"with a valid certificate in the PKI: new ones may connect, revoked or unknown ones are removed (their\n" +
		"sessions close). Publishes the CRL to the fleet, retained. Connects as the broker administrator with a\n" +
		"certificate minted for the session from the CA key.\n\n"
	fs := pkiFlagSet("sync")
	dir := fs.String("dir", pkiDirDefault(), "PKI directory")
	broker, prefix := tellFlags(fs, "")
	pos, err := parseSubcommandFlags(s, fs, usage, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 || *broker == "" {
		return usageError{"broker sync needs --broker mqtts://HOST:PORT (or WAYBILL_BROKER) and no arguments"}
	}
	p, err := openPKI(*dir)
	if err != nil {
		return err
	}
	warnCRL(s, p)
	return tellBroker(ctx, s, p, *broker, *prefix, true)
}

// brokerCertFlag registers --cert NAME, the broker certificate to use. It was --broker, which everywhere
// else is a broker URL; --broker NAME still works here, with a deprecation note on standard error.
func brokerCertFlag(s streams, fs *flag.FlagSet) *string {
	name := new(string)
	fs.StringVar(name, "cert", "", "broker certificate name in the PKI (default: the only one)")
	fs.Func("broker", "deprecated: use --cert NAME", func(v string) error {
		fmt.Fprintln(s.err, "waybill broker: --broker NAME is deprecated here (elsewhere --broker is a URL): use --cert", v)
		*name = v
		return nil
	})
	return name
}

// pickBrokerCert checks that --cert names a broker certificate, or that the PKI has exactly one, and says
// which flag chooses when there are several.
func pickBrokerCert(p *pki.PKI, name *string) error {
	names, err := p.Names(pki.RoleBroker)
	if err != nil {
		return err
	}
	switch {
	case *name != "" && !slices.Contains(names, *name):
		return usageError{fmt.Sprintf("no broker certificate %q in %s (broker certificates: %s); issue one with "+
			"`waybill pki issue --role broker %s`", *name, p.Dir(), strings.Join(names, ", "), *name)}
	case *name == "" && len(names) == 0:
		return usageError{fmt.Sprintf("no broker certificate in %s: issue one with `waybill pki issue --role broker "+
			"--host HOST NAME`", p.Dir())}
	case *name == "" && len(names) > 1:
		return usageError{fmt.Sprintf("%d broker certificates in %s (%s): pick one with --cert NAME", len(names),
			p.Dir(), strings.Join(names, ", "))}
	}
	return nil
}

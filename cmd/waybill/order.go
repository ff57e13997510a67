package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
)

// Files in the dispatch data directory.
const (
	outboxFile = "outbox.db"
	// archiveFile is dispatch's own record (archive.File): what the trucks sent, committed before it is
	// acknowledged to the broker and receipted to the truck. Only the sender-lock holder opens it.
	archiveFile = archive.File
	senderLock  = "sender.lock" // held by the one process that connects and sends (watch, or an order command)
)

// dispatchFlags are the flags shared by `waybill order` and `waybill watch`.
type dispatchFlags struct {
	data, pkiDir, name, cert, key, ca, crl, broker, prefix string
	verbose, allowPlaintext                                bool
	onlineGrace                                            time.Duration
}

// brokerEnv is the default for --broker: WAYBILL_BROKER, or the agent's WAYBILL_BROKERS, so one exported
// variable serves both programs on a development machine.
func brokerEnv() string {
	if v := os.Getenv("WAYBILL_BROKER"); v != "" {
		return v
	}
	return os.Getenv("WAYBILL_BROKERS")
}

// brokerURLs splits --broker and completes "host:port" to "mqtts://host:port": people type the address
// they see in mosquitto.conf, and TLS is the only sensible default for a fleet broker.
func brokerURLs(list string) []string {
	var out []string
	for _, b := range strings.Split(list, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		if !strings.Contains(b, "://") {
			b = "mqtts://" + b
		}
		out = append(out, b)
	}
	return out
}

func (d *dispatchFlags) register(fs *flag.FlagSet) {
	def := os.Getenv("WAYBILL_DISPATCH_DATA")
	if def == "" {
		def = "dispatch"
	}
	fs.StringVar(&d.data, "data", def, "dispatch data directory: the order outbox and the archive of what trucks sent (default $WAYBILL_DISPATCH_DATA or ./dispatch)")
	fs.StringVar(&d.pkiDir, "pki", "", "PKI directory (waybill pki init): identity from issued/NAME.crt and private/NAME.key, CA and trucks' certificates")
	fs.StringVar(&d.name, "name", "", "dispatch identity in --pki (default: its only dispatch identity)")
	fs.StringVar(&d.cert, "cert", "", "dispatch certificate (PEM), instead of --pki")
	fs.StringVar(&d.key, "key", "", "its private key (PEM)")
	fs.StringVar(&d.ca, "ca", "", "fleet CA certificate (PEM)")
	fs.StringVar(&d.crl, "crl", "", "fleet CRL (PEM or DER), optional (default with --pki: its crl.pem)")
	fs.StringVar(&d.broker, "broker", brokerEnv(), "broker URL(s), comma-separated, e.g. mqtts://mqtt.example.com:8883; HOST:PORT means mqtts://HOST:PORT (default $WAYBILL_BROKER, else the agent's $WAYBILL_BROKERS)")
	fs.BoolVar(&d.allowPlaintext, "allow-plaintext", false, "allow mqtt:// broker URLs without TLS (local development only: the broker cannot tell who connects)")
	fs.StringVar(&d.prefix, "prefix", sdk.DefaultPrefix, "topic prefix")
	fs.DurationVar(&d.onlineGrace, "online-grace", dispatch.DefaultOnlineGrace, "when a truck comes online, send its unconfirmed orders again after this long (the broker's queue goes first)")
	fs.BoolVar(&d.verbose, "v", false, "log connection and sending details to standard error")
}

// identity is the resolved dispatch identity and trust.
type identity struct {
	name              string
	cert              *x509.Certificate
	key               crypto.Signer
	certFile, keyFile string
	caFile, crlFile   string
	ca                []*x509.Certificate
	known             []*x509.Certificate // fleet certificates (for telemetry that carries none)
	topics            sdk.Topics
}

func (d *dispatchFlags) identity() (*identity, error) {
	id := &identity{topics: sdk.Topics{Prefix: d.prefix}, crlFile: d.crl}
	if err := id.topics.Validate(); err != nil {
		return nil, usageError{err.Error()}
	}
	switch {
	case d.pkiDir != "" && (d.cert != "" || d.key != ""):
		return nil, usageError{"give --pki (with --name) or --cert/--key/--ca, not both"}
	case d.pkiDir != "":
		p, err := pki.Open(pki.Config{Dir: d.pkiDir})
		if err != nil {
			return nil, err
		}
		name := d.name
		if name == "" {
			names, err := p.Names(pki.RoleDispatch)
			if err != nil {
				return nil, err
			}
			if len(names) != 1 {
				return nil, usageError{fmt.Sprintf("the PKI has %d dispatch identities (%s): choose one with --name",
					len(names), strings.Join(names, ", "))}
			}
			name = names[0]
		}
		id.certFile, id.keyFile, id.caFile = p.CertPath(name), p.KeyPath(name), p.CAPath()
		if id.crlFile == "" {
			if _, err := os.Stat(p.CRLPath()); err == nil {
				id.crlFile = p.CRLPath()
			}
		}
		if known, err := readCertDir(filepath.Join(d.pkiDir, pki.IssuedDir)); err == nil {
			id.known = known
		}
	case d.cert != "" && d.key != "" && d.ca != "":
		id.certFile, id.keyFile, id.caFile = d.cert, d.key, d.ca
	default:
		return nil, usageError{"no dispatch identity: give --pki DIR (and --name NAME), or --cert, --key and --ca"}
	}
	if err := pki.CheckKeyFile(id.keyFile); err != nil {
		return nil, err
	}
	var err error
	if id.cert, err = pki.LoadCertificate(id.certFile); err != nil {
		return nil, err
	}
	ident, err := pki.IdentityOf(id.cert)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", id.certFile, err)
	}
	if ident.Role != pki.RoleDispatch {
		return nil, fmt.Errorf("%s is a %s certificate: orders are signed with a dispatch identity", id.certFile, ident.Role)
	}
	id.name = ident.Name
	if id.key, err = pki.LoadPrivateKey(id.keyFile); err != nil {
		return nil, err
	}
	if id.ca, err = pki.LoadCertificates(id.caFile); err != nil {
		return nil, err
	}
	if id.crlFile != "" {
		if err := pki.CheckCRLFile(id.crlFile, time.Now(), 30*24*time.Hour); err != nil {
			fmt.Fprintln(os.Stderr, "waybill: warning:", err)
		}
	}
	return id, nil
}

func (d *dispatchFlags) logger(w io.Writer) *slog.Logger {
	if !d.verbose {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// open loads the dispatch identity, builds the logger (on w) and opens the data directory's outbox. The
// store is opened per operation (see dispatch.OutboxConfig.Path) so that `waybill order` works while
// `waybill watch` runs.
func (d *dispatchFlags) open(w io.Writer) (*identity, *slog.Logger, *dispatch.Outbox, error) {
	id, err := d.identity()
	if err != nil {
		return nil, nil, nil, err
	}
	log := d.logger(w)
	if err := os.MkdirAll(d.data, 0o700); err != nil {
		return nil, nil, nil, err
	}
	ob, err := dispatch.NewOutbox(dispatch.OutboxConfig{
		Path: filepath.Join(d.data, outboxFile), StoreOptions: store.Options{LockTimeout: 10 * time.Second, Logger: log},
		Certificate: id.cert, Key: id.key, Topics: id.topics, Logger: log, OnlineGrace: onlineGrace(d.onlineGrace),
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return id, log, ob, nil
}

// onlineGrace maps the flag to OutboxConfig.OnlineGrace, where zero means the default: 0 on the command line
// means at once.
func onlineGrace(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// client builds the connection of the process that holds the sender lock. Its MQTT session is persistent
// (the transport's default expiry, 7 days): `waybill order` and `waybill watch` connect with one client id
// (the certificate's name) and take turns through the sender lock, so whichever runs next gets what the
// broker queued meanwhile. Both commit everything to the archive (rec) before acknowledging it, and
// receipt it to the trucks; both subscribe to the same topics, so the session's subscriptions stay the same.
// Without rec (watch --passive) it records and receipts nothing, and its session ends with the connection.
func (d *dispatchFlags) client(id *identity, ob *dispatch.Outbox, rec dispatch.Record, log *slog.Logger, share string,
	handle func(context.Context, dispatch.Update) error) (*dispatch.Client, error) {
	if err := d.checkBroker(); err != nil {
		return nil, err
	}
	var crl *x509.RevocationList
	if id.crlFile != "" {
		var err error
		if crl, err = pki.LoadCRL(id.crlFile); err != nil {
			return nil, err
		}
	}
	v, err := sdk.NewVerifier(sdk.VerifierConfig{CA: id.ca, CRL: crl, Topics: id.topics, Logger: log})
	if err != nil {
		return nil, err
	}
	for _, c := range id.known {
		if !c.IsCA {
			_ = v.AddCertificate(c) // broker and expired certificates cannot sign messages
		}
	}
	tc := transport.Config{
		Brokers: brokerURLs(d.broker), AllowPlaintext: d.allowPlaintext, CertFile: id.certFile, KeyFile: id.keyFile, CAFile: id.caFile,
		CRLFile: id.crlFile, BackoffMin: 500 * time.Millisecond, BackoffMax: 30 * time.Second, Logger: log,
	}
	if rec == nil {
		// A passive view (watch --passive): nothing it misses is anyone's loss, so the broker keeps nothing for it.
		tc.SessionExpiry, tc.CleanStart = -1, true
	}
	return dispatch.New(dispatch.Config{
		Transport: tc,
		Topics:    id.topics, ShareGroup: share, Verifier: v, Outbox: ob, Record: rec, Handle: handle, Logger: log,
	})
}

// checkBroker validates --broker before anything waits or connects, so a mistake is reported at once.
func (d *dispatchFlags) checkBroker() error {
	urls := brokerURLs(d.broker)
	if len(urls) == 0 {
		return usageError{"no broker: give --broker mqtts://HOST:PORT (or set WAYBILL_BROKER)"}
	}
	// The transport validates URLs without touching the network; its errors say what to write.
	_, err := transport.New(transport.Config{Brokers: urls, AllowPlaintext: d.allowPlaintext, ClientID: "check",
		CertFile: "unused", KeyFile: "unused", CAFile: "unused"})
	if err != nil {
		return usageError{strings.TrimPrefix(err.Error(), "transport: ")}
	}
	return nil
}

// openArchive opens DATA/archive.db; call it only while holding the sender lock.
func (d *dispatchFlags) openArchive() (*archive.Archive, error) {
	return archive.Open(filepath.Join(d.data, archiveFile), archive.Options{Timeout: 10 * time.Second})
}

// senderLock is an exclusive lock on DATA/sender.lock: only its holder connects as the dispatch identity
// (a second connection with the same certificate would take the first one's place at the broker) and
// signs orders (sequence numbers must not interleave from two processes). The holder writes its pid and
// command into the file, so others can say who holds it.
type lockFile struct{ f *os.File }

// tryLock takes the lock without waiting. When another process holds it, holder describes that process
// (" (pid 123, waybill watch)") if it wrote its pid.
func tryLock(dir, who string) (l *lockFile, got bool, holder string, err error) {
	f, err := os.OpenFile(filepath.Join(dir, senderLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false, "", err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			b, _ := io.ReadAll(io.LimitReader(f, 200))
			if who := strings.TrimSpace(string(b)); who != "" {
				holder = " (pid " + who + ")"
			}
			return nil, false, holder, nil
		}
		return nil, false, "", fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	if f.Truncate(0) == nil {
		_, _ = f.WriteAt([]byte(fmt.Sprintf("%d, %s\n", os.Getpid(), who)), 0)
	}
	return &lockFile{f}, true, "", nil
}

// release empties the pid and closes the file, which releases the lock.
func (l *lockFile) release() {
	_ = l.f.Truncate(0)
	l.f.Close()
}

func runOrder(ctx context.Context, s streams, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(s.out, "Usage: waybill order create|cancel|list [flags]   (waybill order SUBCOMMAND --help)")
		fmt.Fprintln(s.out)
		fmt.Fprintln(s.out, "Orders go into the dispatch outbox (--data DIR) on disk first, then to the broker; the outbox sends")
		fmt.Fprintln(s.out, "each revision again until the truck's signed received event confirms it. `waybill watch` keeps")
		fmt.Fprintln(s.out, "sending; so does every later order command.")
		if len(args) == 0 {
			return usageError{"want a subcommand: create, cancel or list"}
		}
		return nil
	}
	switch args[0] {
	case "create":
		return runOrderCreate(ctx, s, args[1:])
	case "cancel":
		return runOrderCancel(ctx, s, args[1:])
	case "list":
		return runOrderList(ctx, s, args[1:])
	}
	return usageError{fmt.Sprintf("unknown subcommand %q: want create, cancel or list", args[0])}
}

func runOrderCreate(ctx context.Context, s streams, args []string) error {
	fs := flag.NewFlagSet("order create", flag.ContinueOnError)
	fs.SetOutput(s.err)
	var d dispatchFlags
	d.register(fs)
	truck := fs.String("truck", "", "truck name (required)")
	id := fs.String("id", "", "order id: 1-64 of A-Z a-z 0-9 . _ : - (required)")
	recipient := fs.String("recipient", "", "recipient's name")
	address := fs.String("address", "", "delivery address")
	lat := fs.Float64("lat", 0, "destination latitude, degrees (required)")
	lon := fs.Float64("lon", 0, "destination longitude, degrees (required)")
	radius := fs.Int("radius", dispatch.DefaultRadiusM, "arrival radius, metres")
	notes := fs.String("notes", "", "notes for the driver")
	expires := fs.Duration("expires", 24*time.Hour, "how long the order is valid")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the truck's confirmation (0: store only, do not send now)")
	fs.Usage = func() {
		fmt.Fprintln(s.err, "Usage: waybill order create --truck T --id ID --lat LAT --lon LON [--recipient R] [--address A]")
		fmt.Fprintln(s.err, "         [--radius M] [--notes N] [--expires 24h] [--wait 10s] --pki DIR|--cert/--key/--ca --broker URL")
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, exitCodes)
		fmt.Fprintln(s.err)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *truck == "" || *id == "" || !set["lat"] || !set["lon"] {
		return usageError{"--truck, --id, --lat and --lon are required"}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected arguments %q", fs.Args())}
	}
	if *expires <= 0 {
		return usageError{"--expires must be positive"}
	}
	if *wait > 0 {
		if err := d.checkBroker(); err != nil { // before anything is stored
			return err
		}
	}
	ident, log, ob, err := d.open(s.err)
	if err != nil {
		return err
	}
	now := time.Now()
	e, err := ob.Create(ctx, sdk.Order{ID: *id, Truck: *truck, Created: now, Expires: now.Add(*expires),
		Recipient: *recipient, Address: *address, Lat: *lat, Lon: *lon, RadiusM: *radius, Notes: *notes})
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "order %s for %s: revision %d stored in %s\n", e.Order.ID, e.Order.Truck, e.Order.Revision,
		filepath.Join(d.data, outboxFile))
	return sendAndReport(ctx, s, &d, ident, ob, log, e, *wait)
}

func runOrderCancel(ctx context.Context, s streams, args []string) error {
	fs := flag.NewFlagSet("order cancel", flag.ContinueOnError)
	fs.SetOutput(s.err)
	var d dispatchFlags
	d.register(fs)
	truck := fs.String("truck", "", "truck name (required)")
	id := fs.String("id", "", "order id (required)")
	reason := fs.String("reason", "", "why, for the driver")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for the truck's confirmation (0: store only)")
	fs.Usage = func() {
		fmt.Fprintln(s.err, "Usage: waybill order cancel --truck T --id ID [--reason R] [--wait 10s] --pki DIR|--cert/--key/--ca --broker URL")
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, "A cancellation is a new revision of the order with status cancelled. An order the outbox knows is")
		fmt.Fprintln(s.err, "delivered or failed cannot be cancelled (exit 1, nothing stored); a truck that delivered it before the")
		fmt.Fprintln(s.err, "cancellation arrived refuses it (exit 1; order list shows e.g. \"delivered (cancel refused)\").")
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, exitCodes)
		fmt.Fprintln(s.err)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *truck == "" || *id == "" {
		return usageError{"--truck and --id are required"}
	}
	if *wait > 0 {
		if err := d.checkBroker(); err != nil { // before anything is stored
			return err
		}
	}
	ident, log, ob, err := d.open(s.err)
	if err != nil {
		return err
	}
	e, err := ob.Cancel(ctx, *truck, *id, *reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "order %s for %s: cancellation (revision %d) stored\n", e.Order.ID, e.Order.Truck, e.Order.Revision)
	return sendAndReport(ctx, s, &d, ident, ob, log, e, *wait)
}

// Exit codes of order create and order cancel besides 0 (the truck confirmed, or the broker took the order
// and the outbox sends it until the truck confirms), 1 (failed or refused) and 2 (command line).
const (
	// exitNotSent: the order is stored in the outbox but could not be handed to the broker yet (the broker
	// is unreachable, or another process sends for the data directory and did not send it in time). It is
	// not lost: waybill watch, or the next order command, sends it.
	exitNotSent = 3
)

// exitCodes is the part of --help that documents them; README repeats it.
const exitCodes = `Exit status: 0 the truck confirmed the order, or the broker took it and the outbox re-sends it until the
truck confirms; 1 failed or refused (e.g. cancelling a delivered order); 2 bad command line; 3 stored in the
outbox but not sent yet (broker unreachable): waybill watch, or the next order command, sends it.`

// sendAndReport sends what the outbox holds (when no other process is the sender) and waits up to wait for
// the truck to confirm e's revision, then says where it stands. Not being confirmed yet is not a failure:
// the outbox keeps the order; not being sent at all is exit code 3, with the reason.
func sendAndReport(ctx context.Context, s streams, d *dispatchFlags, id *identity, ob *dispatch.Outbox, log *slog.Logger,
	e dispatch.Entry, wait time.Duration) error {
	truck, oid, rev := e.Order.Truck, e.Order.ID, e.Order.Revision
	confirmed := func() (dispatch.Entry, bool) {
		cur, err := ob.Get(ctx, truck, oid)
		if err != nil {
			return e, false
		}
		return cur, cur.Confirmed >= rev
	}
	var linkErr error // the transport's last connection error, if the link never came up
	if wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		delegated := false
		for wctx.Err() == nil {
			if _, ok := confirmed(); ok {
				break
			}
			lock, got, holder, err := tryLock(d.data, "waybill order")
			if err != nil {
				return err
			}
			if got {
				var err error
				linkErr, err = sendUntil(wctx, s, d, id, ob, log, wait, confirmed)
				lock.release()
				if err != nil {
					return err
				}
				break
			}
			if !delegated {
				fmt.Fprintf(s.out, "another waybill process%s (watch, or an order command) is sending for this data directory: it sends this order\n",
					holder)
				delegated = true
			}
			sleep(wctx, 250*time.Millisecond)
		}
	}
	cur, ok := confirmed()
	cancelling := cur.Order.Status == sdk.OrderCancelled
	switch {
	case ok && cancelling && (cur.CancelRefused || cur.State == dispatch.StateConflict):
		fmt.Fprintf(s.out, "REFUSED: %s had already %s the order before the cancellation arrived; the order stays %s\n",
			truck, lastKind(cur), cur.StateText())
		return fmt.Errorf("cancellation of %s/%s refused by the truck: the order was already %s", truck, oid, lastKind(cur))
	case ok:
		fmt.Fprintf(s.out, "confirmed: %s received revision %d at %s\n", truck, rev, cur.ConfirmedAt.UTC().Format(time.DateTime+" UTC"))
	case cur.Sends > 0:
		fmt.Fprintf(s.out, "sent to the broker (%d time(s)), not confirmed by %s yet: waybill watch, or the next order command, "+
			"sends it again until the truck confirms it\n", cur.Sends, truck)
	default:
		why := cur.LastError
		if linkErr != nil {
			why = linkErr.Error()
		}
		if wait <= 0 {
			why = "--wait 0: stored only"
		}
		msg := "not sent yet"
		if why != "" {
			msg += " (" + why + ")"
		}
		fmt.Fprintf(s.out, "%s: it is safe in the outbox; waybill watch, or the next order command, sends it\n", msg)
		return exitError{code: exitNotSent}
	}
	return nil
}

func lastKind(e dispatch.Entry) string {
	if e.LastEvent != nil && e.LastEvent.Kind != sdk.EventReceived {
		return e.LastEvent.Kind.String()
	}
	return "delivered or failed"
}

// sendUntil connects, runs the outbox's re-sender and applies the events that come back, until done
// reports true or ctx ends. What arrives meanwhile (the persistent session's queue) goes into the archive.
// Each failed connection attempt is a line on standard error, so a broker that is down is seen at once, not
// after the whole wait; the last one is returned (nil once connected).
func sendUntil(ctx context.Context, s streams, d *dispatchFlags, id *identity, ob *dispatch.Outbox, log *slog.Logger,
	wait time.Duration, done func() (dispatch.Entry, bool)) (linkErr error, err error) {
	a, err := d.openArchive()
	if err != nil {
		return nil, err
	}
	defer a.Close()
	c, err := d.client(id, ob, a, log, "", nil)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(rctx) }()
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // progress, for people
		defer wg.Done()
		start, attempt := time.Now(), 0
		for {
			select {
			case <-rctx.Done():
				return
			case st, ok := <-c.Conn().States():
				if !ok || st.Closed {
					return
				}
				mu.Lock()
				linkErr = st.Err
				mu.Unlock()
				if st.Err != nil && !st.Connected {
					attempt++
					fmt.Fprintf(s.err, "waybill: attempt %d (%s of %s): %v\n", attempt,
						time.Since(start).Round(100*time.Millisecond), wait, st.Err)
				}
			}
		}
	}()
	for rctx.Err() == nil {
		sleep(rctx, 200*time.Millisecond)
		if _, ok := done(); ok {
			break
		}
	}
	cancel()
	err = <-errc
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return linkErr, err
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func runOrderList(ctx context.Context, s streams, args []string) error {
	fs := flag.NewFlagSet("order list", flag.ContinueOnError)
	fs.SetOutput(s.err)
	def := os.Getenv("WAYBILL_DISPATCH_DATA")
	if def == "" {
		def = "dispatch"
	}
	data := fs.String("data", def, "dispatch data directory (default $WAYBILL_DISPATCH_DATA or ./dispatch)")
	asJSON := fs.Bool("json", false, "one JSON object per order")
	fs.Usage = func() {
		fmt.Fprintln(s.err, "Usage: waybill order list [--data DIR] [--json]")
		fmt.Fprintln(s.err)
		fmt.Fprintln(s.err, "Lists the outbox: each order's current revision and state (pending, received, arrived, delivered,")
		fmt.Fprintln(s.err, "failed, problem, cancelled, conflict, expired), as known from the trucks' verified events. A")
		fmt.Fprintln(s.err, "cancellation that reached the truck after the driver closed the order shows as, e.g.,")
		fmt.Fprintln(s.err, "\"delivered (cancel refused)\": the delivery is what happened.")
		fmt.Fprintln(s.err)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	path := filepath.Join(*data, outboxFile)
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("no outbox at %s (create an order first, or give --data)", path)
	}
	var list []dispatch.Entry
	st, err := store.Open(path, store.Options{LockTimeout: 10 * time.Second})
	if err != nil {
		return err
	}
	list, err = dispatch.ListStore(ctx, st)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(s.out)
		enc.SetEscapeHTML(false)
		for _, e := range list {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TRUCK\tORDER\tREV\tSTATE\tCONFIRMED\tSENDS\tRECIPIENT\tADDRESS\tUPDATED")
	for _, e := range list {
		conf := "-"
		if e.Confirmed > 0 {
			conf = fmt.Sprintf("rev %d", e.Confirmed)
		}
		state := e.StateText()
		if e.Order.Status == sdk.OrderCancelled && e.Unconfirmed() {
			state += " (cancel pending)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", e.Order.Truck, e.Order.ID, e.Order.Revision, state, conf,
			e.Sends, e.Order.Recipient, e.Order.Address, e.Updated.UTC().Format(time.DateTime+" UTC"))
	}
	return tw.Flush()
}

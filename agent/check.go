package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/waybill-iot/waybill/gps"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/store"
)

// Severity of a check result.
type Severity string

const (
	OK   Severity = "ok"
	Warn Severity = "warn"
	Fail Severity = "FAIL"
)

// CheckResult is one line of `waybill-agent check`.
type CheckResult struct {
	Name     string
	Severity Severity
	Detail   string
	Fix      string // what to do, when not OK
}

// CheckOptions selects the checks.
type CheckOptions struct {
	Offline     bool             // skip the broker and the GPS receiver
	GPSTimeout  time.Duration    // how long to wait for valid sentences; zero: 5 s
	Now         func() time.Time // nil: time.Now
	BrokerProbe time.Duration    // TLS handshake timeout; zero: 10 s
}

// Check validates the configuration and its environment: files, key permissions, certificate and CRL
// dates, the data directory and store, and (unless offline) a mutual-TLS handshake with each broker and
// valid sentences from the GPS receiver. It never connects over MQTT, so running it beside a running agent
// does not take over the agent's session.
func Check(ctx context.Context, cfg Config, o CheckOptions) []CheckResult {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.GPSTimeout <= 0 {
		o.GPSTimeout = 5 * time.Second
	}
	if o.BrokerProbe <= 0 {
		o.BrokerProbe = 10 * time.Second
	}
	now := o.Now()
	var out []CheckResult
	agentRunning := false // the store is locked: an agent runs with this data directory
	add := func(name string, sev Severity, detail, fix string) {
		out = append(out, CheckResult{name, sev, detail, fix})
	}
	if cfg.AllowTestTimings {
		add("limits", Warn, "allow_test_timings = true: durations and rates may go below their floors",
			"delete allow_test_timings from the configuration: it is for test rigs and the demo")
	}

	// Identity.
	keyErr := pki.CheckKeyFile(cfg.Identity.Key)
	if keyErr != nil {
		add("truck key", Fail, keyErr.Error(), "")
	} else {
		add("truck key", OK, cfg.Identity.Key+" (owner-only)", "")
	}
	roots, caErr := pki.LoadCertPool(cfg.Identity.CA)
	if caErr != nil {
		add("fleet CA", Fail, caErr.Error(), "copy ca.crt from the fleet PKI (waybill pki init) to "+cfg.Identity.CA)
	} else {
		add("fleet CA", OK, cfg.Identity.CA, "")
	}
	var pair tls.Certificate
	cert, certErr := pki.LoadCertificate(cfg.Identity.Cert)
	switch {
	case certErr != nil:
		add("truck certificate", Fail, certErr.Error(), "issue one: waybill pki issue --role truck NAME")
	default:
		id, err := pki.IdentityOf(cert)
		days := int(cert.NotAfter.Sub(now).Hours() / 24)
		switch {
		case err != nil:
			add("truck certificate", Fail, err.Error(), "issue a truck certificate from the fleet PKI")
		case id.Role != pki.RoleTruck:
			add("truck certificate", Fail, fmt.Sprintf("%s is a %s certificate", id.Name, id.Role), "use a truck certificate")
		case now.After(cert.NotAfter):
			add("truck certificate", Fail, fmt.Sprintf("%s expired on %s", id.Name, cert.NotAfter.Format(time.DateOnly)),
				"renew: waybill pki issue --role truck "+id.Name+", then put the new files in place (no restart needed)")
		case now.Before(cert.NotBefore):
			add("truck certificate", Fail, fmt.Sprintf("%s is valid only from %s (is the clock right?)", id.Name, cert.NotBefore),
				"check the system clock, or wait for a GPS fix: the agent uses GPS time when the clock is implausible")
		case days < 30:
			add("truck certificate", Warn, fmt.Sprintf("%s expires in %d days", id.Name, days), "renew it soon: waybill pki issue --role truck "+id.Name)
		default:
			add("truck certificate", OK, fmt.Sprintf("%s, %d days left", id.Name, days), "")
		}
		if caErr == nil {
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil && !now.After(cert.NotAfter) {
				add("certificate chain", Fail, err.Error(), "the certificate and the CA file come from different fleets")
			}
		}
		if keyErr == nil {
			if pair, err = pki.LoadKeyPair(cfg.Identity.Cert, cfg.Identity.Key); err != nil {
				add("key matches certificate", Fail, err.Error(), "install the key that belongs to this certificate")
			}
		}
	}
	if cfg.Identity.CRL != "" {
		if err := pki.CheckCRLFile(cfg.Identity.CRL, now, 0); err != nil {
			sev := Warn
			if errors.Is(err, pki.ErrCRLStale) {
				sev = Fail
			}
			add("CRL", sev, err.Error(), "on the PKI host: waybill pki crl --broker URL (trucks get it from the broker); on the broker host: waybill broker config --out DIR again and SIGHUP Mosquitto")
		} else {
			add("CRL", OK, cfg.Identity.CRL, "")
		}
	}

	// Data directory and store.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		add("data directory", Fail, err.Error(), "create "+cfg.DataDir+" writable by the agent's user")
	} else if f, err := os.CreateTemp(cfg.DataDir, ".check-*"); err != nil {
		add("data directory", Fail, err.Error(), "make "+cfg.DataDir+" writable by the agent's user")
	} else {
		f.Close()
		os.Remove(f.Name())
		free := diskFree(cfg.DataDir)
		if free < uint64(cfg.Store.MaxMB)<<20 {
			add("data directory", Warn, fmt.Sprintf("%s: %d MiB free, store may grow to about %d MiB", cfg.DataDir, free>>20, 2*cfg.Store.MaxMB),
				"free space or lower store.max_mb")
		} else {
			add("data directory", OK, fmt.Sprintf("%s: %d MiB free", cfg.DataDir, free>>20), "")
		}
		st, err := store.Open(filepath.Join(cfg.DataDir, "queue.db"), store.Options{LockTimeout: 500 * time.Millisecond})
		switch {
		case errors.Is(err, store.ErrLocked):
			agentRunning = true
			add("store", OK, "in use by the running agent", "")
		case err != nil:
			add("store", Fail, err.Error(), "")
		default:
			s := st.Stats()
			st.Close()
			add("store", OK, fmt.Sprintf("%d critical and %d normal records queued", s.Critical.Records, s.Normal.Records), "")
		}
	}

	out = append(out, checkFleetCRL(cfg, now))

	if o.Offline {
		return out
	}
	// Brokers: a mutual-TLS handshake and one read, which surfaces a TLS 1.3 client-certificate refusal.
	for _, raw := range cfg.Broker.URLs {
		out = append(out, probeBroker(ctx, strings.TrimSpace(raw), roots, pair, now, o.BrokerProbe))
	}
	// GPS. A running agent holds the receiver: opening the port again would, with auto baud, switch its
	// rate under the agent (and on a UART, with no exclusive lock, steal its bytes). Ask the agent instead.
	if agentRunning {
		out = append(out, gpsFromAgent(ctx, cfg, o.BrokerProbe))
	} else {
		out = append(out, probeGPS(ctx, cfg.GPS, o.GPSTimeout, o.Now))
	}
	return out
}

// gpsFromAgent reports the GPS state from the running agent's /healthz (its listener from http.listen, with
// http.token), without opening the receiver.
func gpsFromAgent(ctx context.Context, cfg Config, timeout time.Duration) CheckResult {
	name := "gps (" + cfg.GPS.Source + ")"
	const notOpened = "the agent is running (its store is locked), so the receiver was not opened"
	if cfg.HTTP.Listen == "off" {
		return CheckResult{name, Warn, notOpened + " and its HTTP listener is off: GPS state unknown",
			"stop the agent to probe the receiver, or set http.listen to read its /healthz"}
	}
	base, err := agentURL(cfg.HTTP.Listen)
	if err != nil {
		return CheckResult{name, Warn, notOpened + "; http.listen: " + err.Error(), "fix http.listen"}
	}
	var s Status
	if err := getAgentJSON(ctx, base+"/healthz", cfg.HTTP.Token, timeout, &s); err != nil {
		return CheckResult{name, Warn, notOpened + "; its /healthz did not answer: " + err.Error(),
			"is the store locked by another program (waybill store inspect)? Stop it, or stop the agent to probe the receiver"}
	}
	detail := "from the running agent's /healthz (receiver not opened): " + s.GPS
	if f := s.Fix; f != nil {
		detail += fmt.Sprintf("; last fix %s, %s", f.Time.UTC().Format(time.RFC3339), f.Mode)
		if f.Sats > 0 {
			detail += fmt.Sprintf(", %d sats", f.Sats)
		}
		if f.HDOP != nil {
			detail += fmt.Sprintf(", HDOP %.1f", *f.HDOP)
		}
	}
	switch {
	case s.ClockWarning != "":
		return CheckResult{name, Warn, detail + "; " + s.ClockWarning, clockFix}
	case !strings.HasPrefix(s.GPS, "ok"):
		return CheckResult{name, Warn, detail, "give the antenna a view of the sky; check gps.device and the wiring"}
	}
	return CheckResult{name, OK, detail, ""}
}

// clockFix is what to do when GPS time and the system clock disagree.
const clockFix = "find out which is right (date -u; timedatectl): if the system clock is, the receiver's date is wrong " +
	"(check gps.rollover_floor, update the receiver's firmware); if GPS is, fix NTP or the RTC"

// agentURL turns http.listen into the URL the local agent answers on: an unspecified address (":8080",
// "0.0.0.0:8080", "[::]:8080") is reached on loopback.
func agentURL(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// getAgentJSON reads a JSON answer from the local agent; 200 and 503 (/healthz with a problem) both carry it.
func getAgentJSON(ctx context.Context, url, token string, timeout time.Duration, v any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
		return fmt.Errorf("GET %s: %s (is http.token right?)", url, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return nil
}

// checkFleetCRL says which fleet CRL the agent will verify orders with at start: the newer of identity.crl
// and the one it keeps from the broker (CRLCacheFile in the data directory), as truck.NewClient picks it.
// Without either the truck cannot refuse an order signed by a revoked dispatch key until the broker sends
// a CRL: a warning with what to do.
func checkFleetCRL(cfg Config, now time.Time) CheckResult {
	const name = "fleet CRL for orders"
	cache := filepath.Join(cfg.DataDir, CRLCacheFile)
	ca, err := pki.LoadCertificates(cfg.Identity.CA)
	if err != nil {
		return CheckResult{name, Warn, "not checked: the fleet CA is unusable (see above)", ""}
	}
	v, err := sdk.NewVerifier(sdk.VerifierConfig{CA: ca, Clock: func() time.Time { return now }})
	if err != nil {
		return CheckResult{name, Warn, "not checked: " + err.Error(), ""}
	}
	var notes []string
	for _, f := range []struct{ what, path string }{{"identity.crl", cfg.Identity.CRL}, {"received from the broker", cache}} {
		if f.path == "" {
			continue
		}
		raw, err := os.ReadFile(f.path)
		if errors.Is(err, fs.ErrNotExist) && f.path == cache {
			continue
		}
		if err == nil {
			_, err = v.UpdateCRL(raw)
		}
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s (%s) not usable: %v", f.what, f.path, err))
		}
	}
	info := v.CRLInfo()
	if !info.Loaded {
		detail := "none: neither identity.crl nor a CRL received from the broker (" + cache + "); until the broker " +
			"sends one, orders signed by a revoked dispatch key are accepted"
		if len(notes) > 0 {
			detail += "; " + strings.Join(notes, "; ")
		}
		return CheckResult{name, Warn, detail, "on the PKI host run `waybill broker sync --broker URL` (it publishes the " +
			"fleet CRL, which the agent receives and keeps once connected), or copy the PKI's crl.pem to the truck and " +
			"set identity.crl"}
	}
	detail := info.String()
	if len(notes) > 0 {
		return CheckResult{name, Warn, detail + "; " + strings.Join(notes, "; "), "replace or remove the unusable file"}
	}
	crl := v.CRL()
	if err := pki.CheckCRL(crl, now, 0); errors.Is(err, pki.ErrCRLStale) {
		return CheckResult{name, Warn, detail + ": past its next update " + info.NextUpdate.Format(time.DateOnly),
			"on the PKI host: waybill pki crl, then waybill broker sync --broker URL (the truck applies it when it arrives)"}
	}
	return CheckResult{name, OK, detail, ""}
}

func probeBroker(ctx context.Context, raw string, roots *x509.CertPool, pair tls.Certificate, now time.Time, timeout time.Duration) CheckResult {
	name := "broker " + raw
	u, err := url.Parse(raw)
	if err != nil {
		return CheckResult{name, Fail, err.Error(), "fix broker.urls"}
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "8883")
	}
	if u.Scheme == "mqtt" || u.Scheme == "tcp" {
		return CheckResult{name, Warn, "plaintext (development only): not probed", ""}
	}
	if roots == nil || pair.Certificate == nil {
		return CheckResult{name, Fail, "not probed: the certificate, key or CA is unusable (see above)", ""}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, ServerName: u.Hostname(),
		MinVersion: tls.VersionTLS12, Time: func() time.Time { return now }}}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return CheckResult{name, Fail, err.Error(), brokerFix(err, u.Hostname())}
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) && !errors.Is(err, io.EOF) {
		return CheckResult{name, Fail, "broker refused the truck certificate: " + err.Error(), brokerFix(err, u.Hostname())}
	}
	return CheckResult{name, OK, "mutual TLS accepted", ""}
}

func brokerFix(err error, host string) string {
	s := err.Error()
	var hostErr x509.HostnameError
	switch {
	case errors.As(err, &hostErr):
		names := append(append([]string{}, hostErr.Certificate.DNSNames...), ipStrings(hostErr.Certificate.IPAddresses)...)
		return fmt.Sprintf("the broker certificate is for %s, not %s: use one of those names in broker.urls, or reissue it "+
			"with `waybill pki issue --role broker --host %s %s` and `waybill broker config`", strings.Join(names, ", "), host, host,
			hostErr.Certificate.Subject.CommonName)
	case strings.Contains(s, "revoked"):
		return "this truck's certificate is revoked: issue a new one"
	case strings.Contains(s, "expired"):
		return "a certificate or the broker's CRL expired: renew it (waybill pki issue / waybill pki crl)"
	case strings.Contains(s, "unknown authority"), strings.Contains(s, "unknown certificate authority"):
		return "the broker and the truck trust different CAs: install the fleet's ca.crt on both"
	case strings.Contains(s, "connection refused"), strings.Contains(s, "no such host"), strings.Contains(s, "timeout"):
		return "is the broker running, the address right, and the network up?"
	}
	return "see the broker's log"
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// probeGPS reads the receiver until its first fix, and compares the fix's date with the system clock the
// way the running agent does (clock.check): a receiver with a wrong date, or a wrong week-rollover
// correction of it, is a warning with what to do.
func probeGPS(ctx context.Context, c GPSConfig, timeout time.Duration, now func() time.Time) CheckResult {
	name := "gps (" + c.Source + ")"
	switch c.Source {
	case "replay":
		if _, err := os.Stat(c.ReplayFile); err != nil {
			return CheckResult{name, Fail, err.Error(), "fix gps.replay_file"}
		}
		return CheckResult{name, OK, c.ReplayFile, ""}
	case "serial":
		if _, err := os.Stat(c.Device); err != nil {
			return CheckResult{name, Fail, err.Error(), "is the receiver plugged in? check gps.device (ls /dev/serial/by-id/)"}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	src := newSource(c, nil)
	fixes := make(chan gps.Fix, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = src.Run(ctx, fixes)
	}()
	var got *gps.Fix
	for f := range fixes {
		got = &f
		cancel()
	}
	<-done
	h := src.Health()
	switch {
	case got != nil:
		detail := fmt.Sprintf("fix at %.5f,%.5f (%d sats), dated %s", got.Lat, got.Lon, got.Sats, got.Time.UTC().Format(time.RFC3339))
		floor := c.RolloverFloor
		if floor.IsZero() {
			floor = gps.DefaultRolloverFloor
		}
		clk := newClock(floor, now, nil)
		clk.observe(got.Time)
		cc := clk.check()
		switch {
		case cc.Disagree:
			return CheckResult{name, Warn, detail + ": " + cc.warning(h.Stats.Rollovers, floor), clockFix}
		case !cc.Comparable:
			detail += fmt.Sprintf("; the system clock (%s) is before %s, so the date cannot be cross-checked: the agent will use GPS time",
				cc.System.UTC().Format(time.RFC3339), floor.Format(time.DateOnly))
		}
		return CheckResult{name, OK, detail, ""}
	case h.Stats.Sentences > 0:
		return CheckResult{name, Warn, fmt.Sprintf("%d valid sentences but no fix yet (receiver without sky view?)", h.Stats.Sentences),
			"give the antenna a view of the sky"}
	default:
		detail := "no valid NMEA sentences within " + timeout.String()
		if h.LastError != "" {
			detail += ": " + h.LastError
		}
		return CheckResult{name, Fail, detail, "check gps.device and gps.baud (auto tries 4800-115200), and the wiring"}
	}
}

// FormatCheck writes the report, one line per check with the fix under it, and reports whether all passed.
func FormatCheck(w io.Writer, results []CheckResult) bool {
	ok := true
	for _, r := range results {
		fmt.Fprintf(w, "%-5s %-28s %s\n", r.Severity, r.Name, r.Detail)
		if r.Fix != "" && r.Severity != OK {
			fmt.Fprintf(w, "      %-28s fix: %s\n", "", r.Fix)
		}
		if r.Severity == Fail {
			ok = false
		}
	}
	return ok
}

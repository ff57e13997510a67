package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/waybill-iot/waybill/sdk/pki"
)

const pkiUsage = `Usage: waybill pki COMMAND [flags] [NAME]

  init                  create the fleet CA in --dir
  issue --role ROLE NAME issue a key and certificate (ROLE: truck, dispatch, broker)
  revoke NAME           revoke every certificate of NAME, rewrite the CRL, end NAME's session
  crl                   re-sign the CRL with a fresh next update (run monthly)
  list                  list issued certificates and the CRL's freshness

Every command takes --dir DIR (default $WAYBILL_PKI, else ./pki). issue, revoke and crl take
--broker URL[,URL...] (default $WAYBILL_BROKER) and tell each running broker at once: a new identity
may connect, a revoked one's session ends, the new CRL goes to the fleet. Without a broker, run
"waybill broker sync --broker URL" later. Writers take turns through DIR/index.lock.
`

// pkiDirDefault is --dir's default: $WAYBILL_PKI, else ./pki.
func pkiDirDefault() string {
	if d := os.Getenv("WAYBILL_PKI"); d != "" {
		return d
	}
	return "pki"
}

func runPKI(ctx context.Context, s streams, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(s.err, pkiUsage)
		return usageError{"missing command"}
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(s.out, pkiUsage)
		return nil
	case "init":
		return pkiInit(s, args[1:])
	case "issue":
		return pkiIssue(ctx, s, args[1:])
	case "revoke":
		return pkiRevoke(ctx, s, args[1:])
	case "crl":
		return pkiCRL(ctx, s, args[1:])
	case "list":
		return pkiList(s, args[1:])
	}
	fmt.Fprint(s.err, pkiUsage)
	return usageError{fmt.Sprintf("unknown pki command %q", args[0])}
}

// pkiFlagSet returns a FlagSet that reports errors instead of exiting.
func pkiFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parseSubcommandFlags parses flags placed before or after positional arguments and returns the positionals.
// --help prints usage and the flags to stdout; a bad flag is a usageError.
func parseSubcommandFlags(s streams, fs *flag.FlagSet, usage string, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(s.out, usage)
				fs.SetOutput(s.out)
				fs.PrintDefaults()
				return nil, err
			}
			return nil, usageError{err.Error() + " (see --help)"}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func openPKI(dir string) (*pki.PKI, error) { return pki.Open(pki.Config{Dir: dir}) }

// warnCRL prints the CRL freshness warning, if any: a stale CRL locks every client out of Mosquitto.
func warnCRL(s streams, p *pki.PKI) {
	if err := pki.CheckCRLFile(p.CRLPath(), time.Now(), 0); err != nil {
		fmt.Fprintf(s.err, "warning: %v\n", err)
	}
}

func pkiInit(s streams, args []string) error {
	const usage = "Usage: waybill pki init [--dir DIR] [--fleet NAME]\n\nCreates the fleet CA (ECDSA P-256), an empty CRL and the index.\n\n"
	fs := pkiFlagSet("init")
	dir := fs.String("dir", pkiDirDefault(), "PKI directory")
	fleet := fs.String("fleet", "waybill", "fleet name, the Organization of every certificate")
	years := fs.Int("years", 10, "CA validity in years")
	pos, err := parseSubcommandFlags(s, fs, usage, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{"pki init takes no arguments"}
	}
	p, err := pki.Init(pki.Config{Dir: *dir}, pki.CAOptions{Fleet: *fleet, Validity: time.Duration(*years) * 365 * 24 * time.Hour})
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "created fleet CA %q in %s (valid until %s)\n", p.CACert().Subject.CommonName, p.Dir(),
		p.CACert().NotAfter.UTC().Format(time.DateOnly))
	fmt.Fprintf(s.out, "next: waybill pki issue --role broker NAME --host HOST\n")
	return nil
}

type hostList []string

func (l *hostList) String() string     { return strings.Join(*l, ",") }
func (l *hostList) Set(v string) error { *l = append(*l, v); return nil }

func pkiIssue(ctx context.Context, s streams, args []string) error {
	const usage = "Usage: waybill pki issue --role truck|dispatch|broker [--host HOST]... [--dir DIR] [--broker URL] NAME\n" +
		"       waybill pki issue --role truck --count N --name-prefix PREFIX [--start K] [--dir DIR] [--broker URL]\n\n" +
		"Writes issued/NAME.crt and private/NAME.key (0600). NAME: 1-63 of a-z, 0-9, '-'.\n" +
		"With --count, issues PREFIX00001 ... in one batch (the index written once per 512 names: a fleet of\n" +
		"10,000 in seconds, not minutes), numbered from --start, zero-padded to 5 digits.\n" +
		"With --broker, the running broker lets NAME connect at once.\n\n"
	fs := pkiFlagSet("issue")
	dir := fs.String("dir", pkiDirDefault(), "PKI directory")
	broker, prefix := tellFlags(fs, "")
	role := fs.String("role", "", "truck, dispatch or broker (required)")
	days := fs.Int("days", 730, "validity in days")
	key := fs.String("key", string(pki.ECDSAP256), "key type: ecdsa-p256 or ed25519")
	count := fs.Int("count", 0, "issue this many certificates named PREFIX00001... in one batch (with --name-prefix)")
	namePrefix := fs.String("name-prefix", "", "with --count: the names' prefix, e.g. truck-")
	start := fs.Int("start", 1, "with --count: the first number")
	var hosts hostList
	fs.Var(&hosts, "host", "broker only: an extra DNS name or IP address (repeatable); localhost and 127.0.0.1 are always included")
	pos, err := parseSubcommandFlags(s, fs, usage, args)
	if err != nil {
		return err
	}
	var names []string
	switch {
	case *count != 0 || *namePrefix != "":
		if len(pos) != 0 || *count < 1 || *namePrefix == "" || *start < 0 {
			return usageError{"pki issue --count N --name-prefix PREFIX takes no NAME; N at least 1, --start not negative"}
		}
		for i := range *count {
			names = append(names, fmt.Sprintf("%s%05d", *namePrefix, *start+i))
		}
	case len(pos) != 1:
		return usageError{"pki issue needs exactly one NAME (or --count N --name-prefix PREFIX)"}
	default:
		names = pos
	}
	if *role == "" {
		return usageError{"pki issue needs --role truck, dispatch or broker"}
	}
	if *days < 1 {
		return usageError{"--days must be at least 1"}
	}
	p, err := openPKI(*dir)
	if err != nil {
		return err
	}
	entries, err := p.IssueMany(pki.Role(*role), names, pki.IssueOptions{
		Validity: time.Duration(*days) * 24 * time.Hour, Hosts: hosts, KeyType: pki.KeyType(*key),
	})
	if err != nil {
		if len(entries) > 0 {
			fmt.Fprintf(s.err, "issued %d of %d before the error (%s ... %s)\n", len(entries), len(names),
				entries[0].Name, entries[len(entries)-1].Name)
		}
		return err
	}
	e := entries[0]
	if len(entries) == 1 {
		fmt.Fprintf(s.out, "issued %s %s (serial %s, valid until %s)\n  certificate %s\n  key         %s\n",
			e.Role, e.Name, e.Serial, e.NotAfter.Format(time.DateOnly), p.CertPath(e.Name), p.KeyPath(e.Name))
	} else {
		last := entries[len(entries)-1]
		fmt.Fprintf(s.out, "issued %d %s certificates, %s ... %s (valid until %s)\n  certificates %s\n  keys         %s\n",
			len(entries), e.Role, e.Name, last.Name, e.NotAfter.Format(time.DateOnly),
			filepath.Dir(p.CertPath(e.Name)), filepath.Dir(p.KeyPath(e.Name)))
	}
	warnCRL(s, p)
	switch {
	case e.Role == pki.RoleBroker:
	case *broker != "":
		if err := tellBroker(ctx, s, p, *broker, *prefix, false); err != nil {
			return notTold("issued "+e.Name, err)
		}
	default:
		fmt.Fprintf(s.out, "the broker lets %s in once told: waybill broker sync --broker mqtts://HOST:PORT (or issue with --broker)\n",
			strings.Join(names[:min(len(names), 3)], ", ")+map[bool]string{true: ", ...", false: ""}[len(names) > 3])
	}
	return nil
}

func pkiRevoke(ctx context.Context, s streams, args []string) error {
	const usage = "Usage: waybill pki revoke [--dir DIR] [--broker URL] NAME\n\n" +
		"Revokes every certificate of NAME and rewrites crl.pem. With --broker, at once: the CRL is published\n" +
		"to the fleet (trucks refuse orders signed by a revoked dispatch key, dispatch refuses a revoked\n" +
		"truck's messages) and NAME is removed from the running broker, which closes its session.\n\n"
	fs := pkiFlagSet("revoke")
	dir := fs.String("dir", pkiDirDefault(), "PKI directory")
	broker, prefix := tellFlags(fs, "")
	pos, err := parseSubcommandFlags(s, fs, usage, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageError{"pki revoke needs exactly one NAME"}
	}
	p, err := openPKI(*dir)
	if err != nil {
		return err
	}
	revoked, err := p.Revoke(pos[0])
	if err != nil {
		return err
	}
	for _, e := range revoked {
		fmt.Fprintf(s.out, "revoked %s %s (serial %s)\n", e.Role, e.Name, e.Serial)
	}
	fmt.Fprintf(s.out, "wrote %s\n", p.CRLPath())
	var told error
	if *broker == "" {
		fmt.Fprintf(s.out, "%s's open session goes on until the broker is told: waybill broker sync --broker mqtts://HOST:PORT\n", pos[0])
	} else if err := tellBroker(ctx, s, p, *broker, *prefix, true); err != nil {
		told = notTold("revoked "+pos[0], err)
	}
	fmt.Fprintln(s.out, reloadHint("its TLS listener refuses the certificate too"))
	return told
}

func pkiCRL(ctx context.Context, s streams, args []string) error {
	const usage = "Usage: waybill pki crl [--dir DIR] [--days N] [--broker URL[,URL...]]\n\n" +
		"Re-signs crl.pem with a next update N days ahead. A CRL past its next update locks every client\n" +
		"out of Mosquitto: run this monthly, then on each broker host `waybill broker config` and SIGHUP.\n\n"
	fs := pkiFlagSet("crl")
	dir := fs.String("dir", pkiDirDefault(), "PKI directory")
	days := fs.Int("days", int(pki.DefaultCRLValidity/(24*time.Hour)), "days until the CRL's next update")
	broker, prefix := tellFlags(fs, ": the new CRL is published to the fleet")
	pos, err := parseSubcommandFlags(s, fs, usage, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{"pki crl takes no arguments"}
	}
	if *days < 1 {
		return usageError{"--days must be at least 1"}
	}
	p, err := pki.Open(pki.Config{Dir: *dir, CRLValidity: time.Duration(*days) * 24 * time.Hour})
	if err != nil {
		return err
	}
	if err := p.RefreshCRL(); err != nil {
		return err
	}
	crl, err := p.CRL()
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "wrote %s: next update %s\n", p.CRLPath(), crl.NextUpdate.UTC().Format(time.RFC3339))
	warnCRL(s, p)
	var told error
	if *broker != "" {
		if err := tellBroker(ctx, s, p, *broker, *prefix, true); err != nil {
			told = notTold("re-signed the CRL", err)
		}
	}
	fmt.Fprintln(s.out, reloadHint("Mosquitto checks every client against its copy of the CRL"))
	return told
}

// reloadHint says how a broker host takes up a new CRL, and why. `broker config` keeps the owner of
// every file it replaces, so the chown (which it prints when needed) is rarely needed again.
func reloadHint(why string) string {
	return "then on each broker host: `waybill broker config --out DIR` again (it keeps every file's owner and prints " +
		"`chown -R mosquitto: DIR` first when one is needed) and `kill -HUP $(pidof mosquitto)`: " + why
}

func pkiList(s streams, args []string) error {
	const usage = "Usage: waybill pki list [--dir DIR]\n\nLists every certificate issued, and the CRL's next update.\n\n"
	fs := pkiFlagSet("list")
	dir := fs.String("dir", pkiDirDefault(), "PKI directory")
	pos, err := parseSubcommandFlags(s, fs, usage, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError{"pki list takes no arguments"}
	}
	p, err := openPKI(*dir)
	if err != nil {
		return err
	}
	entries, err := p.List()
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tSERIAL\tNOT AFTER\tSTATUS")
	for _, e := range entries {
		status := "valid"
		switch {
		case e.Revoked():
			status = "revoked " + e.RevokedAt.Format(time.DateOnly)
		case !now.Before(e.NotAfter):
			status = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, e.Role, e.Serial, e.NotAfter.Format(time.DateOnly), status)
	}
	tw.Flush()
	crl, err := p.CRL()
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "CRL: %d revoked, next update %s\n", len(crl.RevokedCertificateEntries), crl.NextUpdate.UTC().Format(time.RFC3339))
	warnCRL(s, p)
	return nil
}

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/waybill-iot/waybill/sdk/brokeradmin"
	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// tellTimeout bounds one administrator session with the broker.
const tellTimeout = 30 * time.Second

// tellFlags adds --broker and --prefix to a command that tells the running broker; extra ends the help of
// --broker.
func tellFlags(fs *flag.FlagSet, extra string) (broker, prefix *string) {
	broker = fs.String("broker", os.Getenv("WAYBILL_BROKER"), "the running broker to tell, e.g. "+
		"mqtts://mqtt.example.com:8883 (default $WAYBILL_BROKER; several: the first is used, a cluster shares "+
		"its clients)"+extra)
	prefix = fs.String("prefix", brokerconf.DefaultPrefix, "topic prefix")
	return broker, prefix
}

// tellBroker brings the running broker in line with the PKI as its administrator (a certificate minted
// for the session): every valid identity may connect with its rights, a revoked one is deleted, which
// ends its session; with publishCRL the CRL goes out to the fleet too. It reports what changed.
func tellBroker(ctx context.Context, s streams, p *pki.PKI, broker, prefix string, publishCRL bool) error {
	broker, _, _ = strings.Cut(broker, ",")
	ctx, cancel := context.WithTimeout(ctx, tellTimeout)
	defer cancel()
	start := time.Now()
	acl := brokerconf.ACL{Prefix: prefix}
	cfg, err := brokeradmin.FromPKI(p, broker, acl)
	if err != nil {
		return err
	}
	ids, err := brokerconf.Identities(p)
	if err != nil {
		return err
	}
	a, err := brokeradmin.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()
	if publishCRL {
		// The CRL first: trucks refuse orders signed by a revoked dispatch key from the moment it arrives.
		crl, err := p.CRL()
		if err != nil {
			return err
		}
		if err := a.PublishCRL(ctx, crl.Raw); err != nil {
			return err
		}
		fmt.Fprintf(s.out, "published CRL #%v (%d revoked) on %s, retained: trucks and dispatch apply it now (%s)\n",
			crl.Number, len(crl.RevokedCertificateEntries), acl.CRLTopic(), time.Since(start).Round(time.Millisecond))
	}
	res, err := a.Sync(ctx, ids)
	if err != nil {
		return err
	}
	took := time.Since(start).Round(time.Millisecond)
	for _, n := range res.Removed {
		fmt.Fprintf(s.out, "broker %s: removed %s: its session, if any, is closed, and it may do nothing if it reconnects (%s)\n", broker, n, took)
	}
	for _, n := range res.Created {
		fmt.Fprintf(s.out, "broker %s: %s may connect now\n", broker, n)
	}
	for _, n := range res.Corrected {
		fmt.Fprintf(s.out, "broker %s: corrected the rights of %s\n", broker, n)
	}
	if len(res.Removed)+len(res.Created)+len(res.Corrected) == 0 {
		fmt.Fprintf(s.out, "broker %s: already knows every identity (%d)\n", broker, len(ids))
	}
	return nil
}

// notTold explains what to do when a PKI change could not reach the broker.
func notTold(what string, err error) error {
	return fmt.Errorf("%s in the PKI, but the broker was not told: %w\n"+
		"run `waybill broker sync --broker mqtts://HOST:PORT` when it is reachable", what, err)
}

package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/waybill-iot/waybill/sdk/brokeradmin"
	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// tellTimeout bounds one administrator session with one broker.
const tellTimeout = 30 * time.Second

// tellFlags adds --broker and --prefix to a command that tells the running broker; extra ends the help of
// --broker.
func tellFlags(fs *flag.FlagSet, extra string) (broker, prefix *string) {
	broker = fs.String("broker", os.Getenv("WAYBILL_BROKER"), "the running broker to tell, e.g. "+
		"mqtts://mqtt.example.com:8883 (default $WAYBILL_BROKER); several, comma-separated, are each told: "+
		"Mosquitto does not cluster, every failover broker of the trucks' broker.urls has its own clients"+extra)
	prefix = fs.String("prefix", brokerconf.DefaultPrefix, "topic prefix")
	return broker, prefix
}

// tellBroker brings every running broker of the comma-separated list in line with the PKI, as their
// administrator (a certificate minted for the session): every valid identity may connect with its rights,
// a revoked one is deleted, which ends its session; with publishCRL the CRL goes out to the fleet too.
// The brokers are told at once, each printing one line as it is done: what changed, or why it was not
// told. An unreachable broker does not stop the others; the error (a *notToldError) names those not told.
func tellBroker(ctx context.Context, s streams, p *pki.PKI, brokers, prefix string, publishCRL bool) error {
	var urls []string
	for _, u := range brokerURLs(brokers) { // order.go's: HOST:PORT means mqtts://HOST:PORT
		if !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 {
		return usageError{fmt.Sprintf("no broker address in %q: want mqtts://HOST:PORT[,mqtts://HOST2:PORT]", brokers)}
	}
	acl := brokerconf.ACL{Prefix: prefix}
	ids, err := brokerconf.Identities(p)
	if err != nil {
		return err
	}
	var crl *x509.RevocationList
	if publishCRL {
		if crl, err = p.CRL(); err != nil {
			return err
		}
	}
	var (
		mu     sync.Mutex // guards s.out and failed
		failed = &notToldError{of: len(urls)}
		wg     sync.WaitGroup
	)
	for _, u := range urls {
		wg.Go(func() {
			done, err := tellOne(ctx, p, u, acl, ids, crl)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if done != "" {
					err = fmt.Errorf("%w (done before: %s)", err, done)
				}
				fmt.Fprintf(s.out, "broker %s: not told: %v\n", u, err)
				failed.urls, failed.errs = append(failed.urls, u), append(failed.errs, err)
				return
			}
			fmt.Fprintf(s.out, "broker %s: told: %s\n", u, done)
		})
	}
	wg.Wait()
	if len(failed.urls) > 0 {
		return failed
	}
	return nil
}

// tellOne tells one broker (see tellBroker) and says what it did; on an error, done says what it had done
// before.
func tellOne(ctx context.Context, p *pki.PKI, broker string, acl brokerconf.ACL, ids []pki.Identity,
	crl *x509.RevocationList) (done string, err error) {
	ctx, cancel := context.WithTimeout(ctx, tellTimeout)
	defer cancel()
	start := time.Now()
	cfg, err := brokeradmin.FromPKI(p, broker, acl)
	if err != nil {
		return "", err
	}
	a, err := brokeradmin.Dial(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer a.Close()
	var parts []string
	if crl != nil {
		// The CRL first: trucks refuse orders signed by a revoked dispatch key from the moment it arrives.
		if err := a.PublishCRL(ctx, crl.Raw); err != nil {
			return "", err
		}
		parts = append(parts, fmt.Sprintf("published CRL #%v (%d revoked) on %s, retained",
			crl.Number, len(crl.RevokedCertificateEntries), acl.CRLTopic()))
	}
	res, err := a.Sync(ctx, ids)
	if err != nil {
		return strings.Join(parts, "; "), err
	}
	if len(res.Removed) > 0 {
		parts = append(parts, "removed "+nameList(res.Removed)+" (session closed; may do nothing if it reconnects)")
	}
	if len(res.Created) > 0 {
		parts = append(parts, nameList(res.Created)+" may connect now")
	}
	if len(res.Corrected) > 0 {
		parts = append(parts, "corrected the rights of "+nameList(res.Corrected))
	}
	if len(res.Removed)+len(res.Created)+len(res.Corrected) == 0 {
		parts = append(parts, fmt.Sprintf("already knows every identity (%d)", len(ids)))
	}
	return fmt.Sprintf("%s (%s)", strings.Join(parts, "; "), time.Since(start).Round(time.Millisecond)), nil
}

// nameList keeps a line short for a batch: "truck-1, truck-2, truck-3 and 997 more".
func nameList(names []string) string {
	if len(names) <= 5 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:3], ", "), len(names)-3)
}

// notToldError lists the brokers tellBroker could not tell.
type notToldError struct {
	of   int // brokers in the list
	urls []string
	errs []error
}

func (e *notToldError) Error() string {
	if e.of == 1 {
		return e.errs[0].Error()
	}
	verb := "was"
	if len(e.urls) > 1 {
		verb = "were"
	}
	return fmt.Sprintf("%d of %d brokers %s not told (%s)", len(e.urls), e.of, verb, strings.Join(e.urls, ", "))
}

// notTold explains what to do when a PKI change could not reach every broker.
func notTold(what string, err error) error {
	retry := "mqtts://HOST:PORT"
	if nt, ok := errors.AsType[*notToldError](err); ok {
		retry = strings.Join(nt.urls, ",")
		if nt.of > 1 {
			return fmt.Errorf("%s in the PKI, but %w\nrun `waybill broker sync --broker %s` when it is reachable", what, err, retry)
		}
	}
	return fmt.Errorf("%s in the PKI, but the broker was not told: %w\n"+
		"run `waybill broker sync --broker %s` when it is reachable", what, err, retry)
}

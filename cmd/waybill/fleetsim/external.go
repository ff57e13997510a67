package fleetsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/waybill-iot/waybill/sdk/brokeradmin"
	"github.com/waybill-iot/waybill/sdk/brokerconf"
	"github.com/waybill-iot/waybill/sdk/pki"
)

// brokerAddr is the HOST:PORT of an external broker's mqtts://HOST:PORT.
func brokerAddr(broker string) (string, error) {
	u, err := url.Parse(broker)
	if err != nil || u.Scheme != "mqtts" || u.Host == "" || u.Path != "" || u.Port() == "" || u.Hostname() == "" {
		return "", fmt.Errorf("fleetsim: broker %q: want mqtts://HOST:PORT", broker)
	}
	return net.JoinHostPort(u.Hostname(), u.Port()), nil
}

// tellTimeout bounds telling an external broker the fleet's identities. Its dynamic security plugin
// rewrites its whole file at every identity it learns: 200 new trucks took 1.1 s here, 800 more 17 s,
// and the time grows with the square of their number.
const tellTimeout = 15 * time.Minute

// tellBroker brings the external broker in line with the PKI, as `waybill broker sync` does, so the
// simulation's identities may connect: as its administrator (a certificate minted from the CA key for
// the session) through its dynamic security plugin. Like broker sync, it also removes what the PKI no
// longer holds (revoked and expired identities).
func tellBroker(ctx context.Context, p *pki.PKI, cfg Config) error {
	ctx, cancel := context.WithTimeout(ctx, tellTimeout)
	defer cancel()
	start := time.Now()
	ids, err := brokerconf.Identities(p)
	if err != nil {
		return err
	}
	acfg, err := brokeradmin.FromPKI(p, cfg.Broker, brokerconf.ACL{Prefix: cfg.Prefix})
	if err != nil {
		return err
	}
	a, err := brokeradmin.Dial(ctx, acfg)
	if err != nil {
		return fmt.Errorf("fleetsim: telling the broker the simulation's identities: %w", err)
	}
	defer a.Close()
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "telling %s the fleet's %d identities\n", cfg.Broker, len(ids))
	}
	res, err := a.Sync(ctx, ids)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("fleetsim: telling %s the simulation's identities took more than %v: issue many new "+
			"trucks beforehand (waybill pki issue --role truck --count %d --name-prefix %s), then run waybill broker "+
			"config and restart the broker: %w", cfg.Broker, tellTimeout, cfg.Trucks, cfg.NamePrefix, err)
	}
	if err != nil {
		return fmt.Errorf("fleetsim: telling %s the simulation's identities: %w", cfg.Broker, err)
	}
	cfg.Logger.Info("fleetsim: broker told", "broker", cfg.Broker, "created", len(res.Created),
		"corrected", len(res.Corrected), "removed", res.Removed, "took", time.Since(start))
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "told %s: %d created, %d corrected, %d removed (%s)\n", cfg.Broker,
			len(res.Created), len(res.Corrected), len(res.Removed), time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// onlySimulatedTrucks refuses a PKI with trucks the simulation did not name (trucks are the simulation's
// when they are prefix and digits): its dispatch would subscribe to the whole fleet, receipt the real
// trucks' events it verifies (their certificate travels with them) and be a dispatch they re-send all
// they hold to whenever it connects. A receipt lets a truck delete a record, and only the office's
// dispatch may say it stored one.
func onlySimulatedTrucks(p *pki.PKI, trucks []string, prefix string) error {
	var real []string
	for _, n := range trucks {
		if !isSimTruck(n, prefix) {
			real = append(real, n)
		}
	}
	if len(real) == 0 {
		return nil
	}
	some := strings.Join(real[:min(len(real), 3)], ", ")
	if len(real) > 3 {
		some += fmt.Sprintf(" and %d more", len(real)-3)
	}
	return fmt.Errorf("fleetsim: the PKI in %s holds trucks that are not the simulation's (%s): with the "+
		"dispatch side (--dispatch) the simulator would receipt their records, which lets them delete what "+
		"the fleet's own dispatch may not have stored; run --dispatch against a broker of simulated trucks "+
		"only, or without --dispatch", p.Dir(), some)
}

// isSimTruck reports whether name is one of truckName's.
func isSimTruck(name, prefix string) bool {
	n, ok := strings.CutPrefix(name, prefix)
	if !ok || len(n) < 5 {
		return false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

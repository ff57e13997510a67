package truck

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"

	"github.com/waybill-iot/waybill/sdk"
)

// CRLStats counts the fleet CRLs the client received on the CRL topic.
type CRLStats struct {
	Applied  uint64 `json:"applied"`   // newer than the list in use: applied at once (and cached)
	NotNewer uint64 `json:"not_newer"` // the same or an older list (the retained CRL at every connection): ignored
	Refused  uint64 `json:"refused"`   // not a CRL signed by the fleet CA: refused, logged, nothing changed
}

// crlState is the client's side of the fleet CRL.
type crlState struct {
	// mu serialises applying a received CRL and writing the cache, so the cache ends with the newest list.
	mu                         sync.Mutex
	applied, notNewer, refused atomic.Uint64
}

// loadCRLs gives the verifier the newer of the configured CRL file and the cached one. The configured file
// must be a CRL of the fleet CA (as before the cache existed); a cache that is missing, unreadable or not
// the fleet's is logged and left out.
func (c *Client) loadCRLs(crlFile, cacheFile string) error {
	log := c.cfg.Logger
	if crlFile != "" {
		raw, err := os.ReadFile(crlFile)
		if err != nil {
			return fmt.Errorf("truck: reading the CRL: %w", err)
		}
		if _, err := c.verifier.UpdateCRL(raw); err != nil {
			return fmt.Errorf("truck: %s: %w", crlFile, err)
		}
	}
	if cacheFile != "" {
		raw, err := os.ReadFile(cacheFile)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			log.Warn("truck: the cached fleet CRL is unreadable; waiting for the broker's", "file", cacheFile, "err", err)
		default:
			if up, err := c.verifier.UpdateCRL(raw); err != nil {
				log.Warn("truck: the cached fleet CRL is refused; waiting for the broker's", "file", cacheFile, "err", err)
			} else if up && crlFile != "" {
				log.Info("truck: the cached fleet CRL is newer than the configured one", "file", cacheFile)
			}
		}
	}
	if info := c.verifier.CRLInfo(); info.Loaded {
		log.Info("truck: fleet CRL in use", "crl", info.String())
	} else {
		log.Warn("truck: no fleet CRL yet: orders signed by a revoked dispatch key are accepted until the broker sends one",
			"topic", c.cfg.Topics.CRL())
	}
	return nil
}

// handleCRL applies a CRL received on the fleet CRL topic: a newer one replaces the verifier's list at once
// and is written to the cache; anything else is counted and logged. It never fails: the message is
// acknowledged either way (a refused CRL would be refused again).
func (c *Client) handleCRL(payload []byte, retained bool) {
	c.crl.mu.Lock()
	defer c.crl.mu.Unlock()
	log := c.cfg.Logger
	up, err := c.verifier.UpdateCRL(payload)
	switch {
	case err != nil:
		c.crl.refused.Add(1)
		log.Warn("truck: fleet CRL refused; keeping the one in use", "crl", c.verifier.CRLInfo().String(), "err", err)
		return
	case !up:
		c.crl.notNewer.Add(1)
		log.Debug("truck: fleet CRL not newer than the one in use", "crl", c.verifier.CRLInfo().String())
		return
	}
	c.crl.applied.Add(1)
	log.Info("truck: fleet CRL applied", "crl", c.verifier.CRLInfo().String(), "retained", retained)
	if c.cfg.CRLCacheFile == "" {
		return
	}
	if err := writeFileSync(c.cfg.CRLCacheFile, c.verifier.CRL().Raw); err != nil {
		log.Error("truck: caching the fleet CRL failed; it applies until the agent restarts", "file", c.cfg.CRLCacheFile, "err", err)
	}
}

// CRLInfo describes the fleet CRL the client verifies orders, receipts and dispatch statuses with.
func (c *Client) CRLInfo() sdk.CRLInfo { return c.verifier.CRLInfo() }

// CRLStats returns the counts of fleet CRLs received.
func (c *Client) CRLStats() CRLStats {
	return CRLStats{Applied: c.crl.applied.Load(), NotNewer: c.crl.notNewer.Load(), Refused: c.crl.refused.Load()}
}

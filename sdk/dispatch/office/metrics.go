package office

import (
	"fmt"
	"net/http"
	"sort"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
)

// metrics writes Prometheus text: the consumer's counts, receipts, the link and orders by state.
func (s *Service) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	st := s.client.Consumer().Stats()
	cs := s.client.Conn().Stats()
	up := 0
	if s.client.Conn().Connected() {
		up = 1
	}
	c := func(name, help string, v uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	fmt.Fprintf(w, "# HELP waybill_dispatch_up The broker link is up.\n# TYPE waybill_dispatch_up gauge\nwaybill_dispatch_up %d\n", up)
	c("waybill_dispatch_fixes_total", "New fixes committed.", st.Fixes)
	c("waybill_dispatch_duplicate_fixes_total", "Fixes dropped as seen before (committed again).", st.DuplicateFixes)
	c("waybill_dispatch_events_total", "New events committed.", st.Events)
	c("waybill_dispatch_duplicate_events_total", "Events dropped as seen before.", st.DuplicateEvents)
	c("waybill_dispatch_statuses_total", "Status messages handled.", st.Statuses)
	c("waybill_dispatch_commit_errors_total", "Failed commits (messages left unacknowledged).", st.CommitErrors)
	c("waybill_dispatch_receipts_sent_total", "Receipts published to trucks.", s.client.ReceiptsSent())
	c("waybill_dispatch_status_errors_total", "Online statuses the outbox could not note (left unacknowledged).", s.statusErrors.Load())
	c("waybill_dispatch_truck_store_changes_total", "Trucks seen with a new store (their open orders reopened).", s.storeChanges.Load())
	c("waybill_dispatch_connects_total", "Successful broker connections.", cs.Connects)
	if s.cert != nil {
		fmt.Fprintf(w, "# HELP waybill_dispatch_tls_certificate_expiry_seconds When the served HTTPS certificate expires (Unix time).\n"+
			"# TYPE waybill_dispatch_tls_certificate_expiry_seconds gauge\nwaybill_dispatch_tls_certificate_expiry_seconds %d\n",
			s.cert.get().Leaf.NotAfter.Unix())
	}
	c("waybill_dispatch_tls_reload_errors_total", "Changed certificate or client CA files that did not load (the old ones kept).", s.tlsReloadErrors.Load())
	c("waybill_dispatch_fixes_pruned_total", "Fixes deleted for being older than the retention period (keep_fixes).", s.fixesPruned.Load())
	c("waybill_dispatch_prune_errors_total", "Pruning passes that failed (tried again at the next).", s.pruneErrors.Load())
	if s.cfg.KeepFixes > 0 {
		fmt.Fprintf(w, "# HELP waybill_dispatch_prune_last_pass_seconds When the last complete pruning pass ended (Unix time; 0: none yet).\n"+
			"# TYPE waybill_dispatch_prune_last_pass_seconds gauge\nwaybill_dispatch_prune_last_pass_seconds %d\n", s.prunePass.Load())
	}
	clients, limited, evicted := s.limit.stats()
	c("waybill_dispatch_public_limited_total", "Public page requests (tracking pages and their files) refused with 429.", limited)
	c("waybill_dispatch_public_clients_evicted_total", "Clients the public pages' rate limit forgot to make room.", evicted)
	fmt.Fprintf(w, "# HELP waybill_dispatch_public_clients Clients the public pages' rate limit remembers.\n# TYPE waybill_dispatch_public_clients gauge\nwaybill_dispatch_public_clients %d\n", clients)
	fmt.Fprintf(w, "# HELP waybill_dispatch_console_streams Open console event streams.\n# TYPE waybill_dispatch_console_streams gauge\nwaybill_dispatch_console_streams %d\n", s.hub.count())
	fmt.Fprintf(w, "# HELP waybill_dispatch_rejected_total Messages refused by the verifier, by reason.\n# TYPE waybill_dispatch_rejected_total counter\n")
	reasons := make([]sdk.Reason, 0, len(st.Rejected))
	for r := range st.Rejected {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool { return reasons[i] < reasons[j] })
	for _, r := range reasons {
		fmt.Fprintf(w, "waybill_dispatch_rejected_total{reason=%q} %d\n", r.String(), st.Rejected[r])
	}
	orders, err := s.cfg.Store.Orders(r.Context())
	if err != nil {
		fmt.Fprintf(w, "# storage: %v\n", err)
		return
	}
	by := map[dispatch.State]int{}
	for _, e := range orders {
		by[e.State]++
	}
	fmt.Fprintf(w, "# HELP waybill_dispatch_orders Orders by state.\n# TYPE waybill_dispatch_orders gauge\n")
	for _, k := range []dispatch.State{dispatch.StatePending, dispatch.StateReceived, dispatch.StateArrived,
		dispatch.StateDelivered, dispatch.StateFailed, dispatch.StateProblem, dispatch.StateCancelled,
		dispatch.StateConflict, dispatch.StateExpired} {
		fmt.Fprintf(w, "waybill_dispatch_orders{state=%q} %d\n", k, by[k])
	}
}

package dispatch

import (
	"time"

	"github.com/waybill-iot/waybill/sdk"
)

// The two methods below let an outbox kept in another engine (the office's PostgreSQL storage,
// sdk/dispatch/storage/postgres) follow exactly the Outbox's rules for events and new truck stores, instead of a
// copy of them that would drift.

// ApplyEvent applies one verified event from the order's truck to e, as Outbox.Apply does, and reports
// whether e changed and a note for the log (an event that does not match the entry). now is the time
// recorded for a confirmation. Applying the same event again changes nothing.
func (e *Entry) ApplyEvent(ev *sdk.Event, now time.Time) (changed bool, note string) {
	return applyEvent(e, ev, now)
}

// Reopen does to e what Outbox.NoteStore does to a truck's orders when its store is new (ch): an open
// order (not delivered, failed, cancelled, conflicting or expired at now) is marked unconfirmed, due at
// once and awaiting the new store's received event. It reports whether e was open, and so changed.
func (e *Entry) Reopen(ch *StoreChange, now time.Time) bool {
	if !isOpen(e, now) {
		return false
	}
	reopenEntry(e, ch, now)
	return true
}

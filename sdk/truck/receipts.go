package truck

import (
	"context"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/store"
)

// recordEpoch is the epoch a record was first stored under: records salvaged from a damaged store keep
// theirs, so dispatch still knows them by the (epoch, seq) it may have seen.
func recordEpoch(st *store.Store, r store.Record) uint64 {
	if r.Epoch != 0 {
		return r.Epoch
	}
	return st.Epoch()
}

// await registers a message's records as waiting for their receipt, before it is submitted: a receipt may
// arrive before the PUBACK is processed.
func (u *Uploader) await(m *message) {
	if u.cfg.AckOnPuback {
		return
	}
	sm := &sentMsg{epoch: m.epoch, at: time.Now(), left: len(m.seqs)}
	u.rmu.Lock()
	defer u.rmu.Unlock()
	for _, seq := range m.seqs {
		if old := u.awaiting[seq]; old != nil {
			old.left-- // cannot happen (a record is handed out once), but never count a record twice
		}
		u.awaiting[seq] = sm
	}
	u.sentFIFO = append(u.sentFIFO, sm)
	m.sent = sm
}

// unawait takes a failed message's records out of the waiting set and returns those still there.
func (u *Uploader) unawait(m message) []uint64 {
	if m.sent == nil {
		return m.seqs
	}
	u.rmu.Lock()
	defer u.rmu.Unlock()
	out := m.seqs[:0:0]
	for _, seq := range m.seqs {
		if u.awaiting[seq] == m.sent {
			delete(u.awaiting, seq)
			m.sent.left--
			out = append(out, seq)
		}
	}
	u.signalRoom()
	return out
}

// signalRoom wakes a Run waiting for room. u.rmu must be held.
func (u *Uploader) signalRoom() {
	select {
	case u.room <- struct{}{}:
	default:
	}
}

// waitRoom blocks while MaxUnreceipted records wait for their receipt and returns how many more may be sent.
func (u *Uploader) waitRoom(ctx context.Context) (int, error) {
	if u.cfg.AckOnPuback {
		return u.cfg.MaxUnreceipted, nil
	}
	for {
		u.rmu.Lock()
		room := u.window - len(u.awaiting)
		u.rmu.Unlock()
		if room > 0 {
			return room, nil
		}
		select {
		case <-u.room:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// maxBlindAck bounds the record numbers of one receipt acked without waiting for them (see HandleReceipt).
const maxBlindAck = 50_000

// HandleReceipt applies a verified receipt from dispatch: the records it names are removed from the store
// for good. Those this uploader waits for are matched by their origin epoch. Records of the store's own
// epoch that it does not wait for (sent before a restart: their receipts come while they wait to be sent
// again) are removed too, up to maxBlindAck numbers per receipt, if they were in the store when it was
// opened (store.SeqAtOpen): a record appended since was sent by nobody else, and a receipt for its number
// is for a record of an older copy of the store (restored from a backup) that dispatch has. Records of
// older epochs (salvaged) are removed only when they wait. Whatever is not removed is sent again and
// receipted again: bytes, never data. It returns the number of records removed.
func (u *Uploader) HandleReceipt(ctx context.Context, r *sdk.Receipt) (int, error) {
	var seqs, blind []uint64
	own := sdk.EpochOf(u.cfg.Store.Epoch())
	opened := u.cfg.Store.SeqAtOpen()
	u.rmu.Lock()
	for _, e := range r.Epochs {
		if e.Epoch == own && e.Count() <= maxBlindAck {
			for _, rg := range e.Ranges {
				for seq := rg.First; seq <= opened; seq++ {
					if u.awaiting[seq] == nil {
						blind = append(blind, seq)
					}
					if seq == rg.Last {
						break
					}
				}
			}
		}
		for _, rg := range e.Ranges {
			if span := rg.Last - rg.First + 1; span <= uint64(len(u.awaiting)) {
				for seq := rg.First; ; seq++ {
					if sm := u.awaiting[seq]; sm != nil && sm.epoch == e.Epoch {
						seqs = append(seqs, seq)
						delete(u.awaiting, seq)
						sm.left--
					}
					if seq == rg.Last {
						break
					}
				}
				continue
			}
			for seq, sm := range u.awaiting {
				if seq >= rg.First && seq <= rg.Last && sm.epoch == e.Epoch {
					seqs = append(seqs, seq)
					delete(u.awaiting, seq)
					sm.left--
				}
			}
		}
	}
	u.timeout = u.cfg.ReceiptTimeout // dispatch is there: no more backing off
	// Each receipted record opens the window by one more (doubling per round trip, as TCP's slow start),
	// back up to MaxUnreceipted.
	u.window = min(u.window+len(seqs), u.cfg.MaxUnreceipted)
	u.receiptedRound += len(seqs)
	u.trimFIFO()
	u.signalRoom()
	u.rmu.Unlock()
	u.stats.receipts.Add(1)
	if len(seqs)+len(blind) == 0 {
		return 0, nil
	}
	// The ack outlives a cancelled ctx: dispatch has the records, and a lost ack only means a duplicate.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	removed, err := u.cfg.Store.AckCount(actx, append(seqs, blind...)...)
	if err != nil {
		// Still handed out in the store: give them back so they are sent (and receipted) again.
		u.cfg.Store.Release(seqs...)
		return 0, err
	}
	u.stats.receipted.Add(uint64(removed))
	return removed, nil
}

// DispatchOnline sends again, at once, every record that was acknowledged by the broker more than a second
// ago and is still waiting for its receipt: a dispatch process has (re)started, and what the broker could
// not keep for it while it was away would otherwise wait for the receipt timeout.
func (u *Uploader) DispatchOnline() int {
	return u.resend(time.Now().Add(-time.Second), true)
}

// resend releases the records of messages submitted before cutoff (PUBACKed ones only: PublishTimeout covers
// the others) so they are sent again, and returns how many. reset ends the timeout's backing off.
func (u *Uploader) resend(cutoff time.Time, reset bool) int {
	u.rmu.Lock()
	var seqs []uint64
	expired := map[*sentMsg]bool{}
	for _, sm := range u.sentFIFO {
		if !sm.at.Before(cutoff) {
			break
		}
		if sm.pubacked && sm.left > 0 {
			expired[sm] = true
		}
	}
	if len(expired) > 0 {
		for seq, sm := range u.awaiting {
			if expired[sm] {
				seqs = append(seqs, seq)
				delete(u.awaiting, seq)
				sm.left--
			}
		}
	}
	if reset {
		u.timeout = u.cfg.ReceiptTimeout
	}
	u.trimFIFO()
	u.signalRoom()
	u.rmu.Unlock()
	if len(seqs) > 0 {
		u.stats.resent.Add(uint64(len(seqs)))
		u.cfg.Store.Release(seqs...)
	}
	return len(seqs)
}

// trimFIFO drops settled messages from the front of the send order. u.rmu must be held.
func (u *Uploader) trimFIFO() {
	i := 0
	for i < len(u.sentFIFO) && u.sentFIFO[i].left <= 0 {
		i++
	}
	if i > 0 {
		u.sentFIFO = append(u.sentFIFO[:0], u.sentFIFO[i:]...)
	}
}

// minWindow is the smallest window of unreceipted records after a loss.
func minWindow(maxUnreceipted int) int { return min(200, maxUnreceipted) }

// resendLoop sends again what waits too long for its receipt, backing off while no receipt comes, and
// narrows the window of unreceipted records to what dispatch receipted in the last round.
func (u *Uploader) resendLoop(ctx context.Context) {
	for {
		u.rmu.Lock()
		timeout := u.timeout
		u.rmu.Unlock()
		tick := min(max(timeout/8, 100*time.Millisecond), 5*time.Second)
		if err := sleep(ctx, tick); err != nil {
			return
		}
		if n := u.resend(time.Now().Add(-timeout), false); n > 0 {
			u.rmu.Lock()
			next := min(u.timeout*2, u.cfg.ReceiptTimeoutMax)
			u.timeout = next
			// Records were lost on the way (a broker dropping what a slow dispatch cannot take, most likely):
			// send again no faster than dispatch receipted in the last round, or the burst is dropped again.
			u.window = min(max(2*u.receiptedRound, minWindow(u.cfg.MaxUnreceipted)), u.cfg.MaxUnreceipted)
			u.receiptedRound = 0
			u.rmu.Unlock()
			u.cfg.Logger.Warn("truck: no receipt from dispatch in time; sending records again", "records", n,
				"waited", timeout, "next_wait", next)
		}
	}
}

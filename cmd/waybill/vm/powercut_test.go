package vm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/store"
)

// cycles is how many power cuts TestPowerCuts makes: $WAYBILL_VM_CYCLES (make test: 5; make soak: 1000),
// else 2, which is what a plain `go test ./...` pays.
func cycles(t *testing.T) int {
	s := os.Getenv("WAYBILL_VM_CYCLES")
	if s == "" {
		return 2
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("WAYBILL_VM_CYCLES=%q: want a number of cycles >= 1", s)
	}
	return n
}

// drainReserve is what the drain after the last cut and the checks may take (boot, connect, empty queue).
const drainReserve = 8 * time.Minute

// TestPowerCuts runs the agent on the virtual truck through real power cuts: each cycle boots the
// machine (the disk alternately on cache=none and cache=writeback), lets the agent drive and upload while
// a driver confirms deliveries through the HTTP hook, and kills QEMU with SIGKILL at a random moment
// (sometimes before the agent answered at all). Then the truck boots once more to drain its queue, and:
//
//   - every delivery the hook answered 200 is at dispatch, as an event;
//   - every seq the store handed out, in every epoch, is at dispatch exactly once (nothing lost before a
//     later record, nothing twice), and at least as many fixes as /metrics said were stored;
//   - every boot opened the store as it was (existing) or said it salvaged it; none recreated it.
func TestPowerCuts(t *testing.T) {
	n := cycles(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WAYBILL_VM_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("%d cycles, seed %d (WAYBILL_VM_SEED=%d repeats the cut times)", n, seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	f := newFleet(t, fleetOptions{})
	start := time.Now()

	var (
		mu      sync.Mutex // guards acked
		acked   []recKey   // deliveries answered 200, with the epoch of the boot
		stored  float64    // fixes /metrics counted as stored, summed over boots (last reading before the cut)
		epochs  []sdk.Epoch
		origins = map[string]int{}
		salv    []string
		bootDur []time.Duration
	)
	salvaged := map[sdk.Epoch]bool{}
	// The origin says how the store's current epoch began; a new epoch after the first must be a salvage
	// that says so, never a store created anew.
	noteEpoch := func(h health) {
		origins[h.Store.Origin]++
		if len(epochs) > 0 && epochs[len(epochs)-1] == h.Store.Epoch {
			return
		}
		epochs = append(epochs, h.Store.Epoch)
		switch {
		case len(epochs) == 1 && h.Store.Origin == "created":
		case h.Store.Origin == "salvaged":
			salvaged[h.Store.Epoch] = true
			salv = append(salv, fmt.Sprintf("boot %d: %s", f.boots, h.Store.Detail))
		default:
			t.Errorf("boot %d: new store epoch %x, origin %q (%s): the power cut cost the store", f.boots,
				h.Store.Epoch[:], h.Store.Origin, h.Store.Detail)
		}
	}
	// A long soak stops cycling while the test's deadline (go test -timeout) still leaves time for the
	// drain and the checks, and says how many cycles it made: a soak cut short still ends with a tally.
	stopBy, hasDeadline := t.Deadline()
	stopBy = stopBy.Add(-drainReserve)
	orders, done := 0, 0
	for c := 1; c <= n && !t.Failed(); c++ {
		if hasDeadline && time.Now().After(stopBy) {
			t.Logf("cycle %d of %d: the test's deadline is %v away; stopping the cycles for the drain and the tally",
				c, n, time.Until(stopBy.Add(drainReserve)).Round(time.Second))
			break
		}
		done = c
		cache := "none"
		if c%2 == 0 {
			cache = "writeback"
		}
		f.createOrders(fmt.Sprintf("o-%d", orders+1), fmt.Sprintf("o-%d", orders+2))
		orders += 2
		bootStart := time.Now()
		b := f.boot(cache, true)
		// One cut in five comes while the machine boots (not in the first cycle: the store must exist
		// for the epoch to be known), the others while the agent runs.
		if c > 1 && rng.IntN(5) == 0 {
			d := time.Duration(rng.Int64N(int64(5 * time.Second)))
			time.Sleep(d)
			b.cut()
			t.Logf("cycle %d (cache=%s): power cut %v into the boot", c, cache, d.Round(100*time.Millisecond))
			continue
		}
		h := b.waitHealth(90*time.Second, "/healthz", func(health) bool { return true })
		bootDur = append(bootDur, time.Since(bootStart))
		noteEpoch(h)
		epoch := h.Store.Epoch

		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var last float64
		wg.Add(2)
		go func() { // the driver; owned: waited below
			defer wg.Done()
			for ctx.Err() == nil {
				if k, _, ok := b.deliverNext(ctx); ok {
					k.Epoch = epoch
					mu.Lock()
					acked = append(acked, k)
					mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Duration(500+rand.IntN(2000)) * time.Millisecond):
				}
			}
		}()
		go func() { // the stored-fix counter; owned: waited below
			defer wg.Done()
			for ctx.Err() == nil {
				if v, err := b.metric(ctx, "waybill_gps_fixes_stored_total"); err == nil {
					mu.Lock()
					last = max(last, v)
					mu.Unlock()
				}
				select {
				case <-ctx.Done():
				case <-time.After(250 * time.Millisecond):
				}
			}
		}()
		time.Sleep(time.Duration(rng.Int64N(int64(10 * time.Second))))
		b.cut()
		cancel()
		wg.Wait()
		mu.Lock()
		stored += last
		mu.Unlock()
		t.Logf("cycle %d (cache=%s): boot %v, %d deliveries acknowledged so far, %.0f fixes stored this boot",
			c, cache, bootDur[len(bootDur)-1].Round(100*time.Millisecond), len(acked), last)
	}
	if t.Failed() {
		return
	}

	// The drain: one more boot until the queue is empty and dispatch has receipted everything. The clock
	// is 25 years wrong: the agent needs GPS time to check the broker's certificate, so the receiver runs
	// until the agent is connected, then it is unplugged so that no more fixes come.
	b := f.boot("none", true)
	h := b.waitHealth(90*time.Second, "/healthz", func(health) bool { return true })
	noteEpoch(h)
	b.waitHealth(2*time.Minute, "a connection", func(h health) bool { return h.Connected })
	b.stopGPS()
	// Empty means nothing in memory either: fixes batched for the next commit or held by the curve
	// filter reach the store seconds after the receiver goes quiet, and must be sent before the last cut.
	b.waitHealth(3*time.Minute, "an empty queue, everything receipted", func(h health) bool {
		return h.Connected && h.Queue.InMemory == 0 && h.Queue.Critical == 0 && h.Queue.Normal == 0 && h.Queue.Unreceipted == 0
	})
	b.cut()
	cyclesDur := time.Since(start)

	// The store as the last power cut left it, read on the host: the next seq it would hand out.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := filepath.Join(f.dir, "queue.db")
	fsck, err := ReadDiskFile(ctx, f.disk, "/data/queue.db", db)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(db, store.Options{LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stats := st.Stats()
	seqs, err := st.Append(ctx, store.Entry{Lane: store.Normal, Kind: 0xee, Data: []byte("probe")})
	if err != nil {
		t.Fatal(err)
	}
	lastEpoch, next := epochOf(st.Epoch()), seqs[0]
	st.Close()
	if stats.Critical.Records != 0 || stats.Normal.Records != 0 {
		t.Errorf("the store after the drain holds records: %+v", stats)
	}

	f.office.Stop()
	arch, err := archive.Open(f.archive, archive.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer arch.Close()
	fixes, err := arch.Fixes(truckName)
	if err != nil {
		t.Fatal(err)
	}
	events, err := arch.Events(truckName)
	if err != nil {
		t.Fatal(err)
	}
	have := map[recKey]string{}
	for _, x := range fixes {
		have[recKey{x.Epoch, x.Seq}] = "fix"
	}
	for _, e := range events {
		k := recKey{e.Event.Epoch, e.Event.RecordSeq}
		if have[k] != "" {
			t.Errorf("%v is both a fix and an event at dispatch", k)
		}
		have[k] = "event"
	}
	known := map[sdk.Epoch]bool{}
	for _, e := range epochs {
		known[e] = true
	}
	byEpoch := map[sdk.Epoch][]uint64{}
	for k := range have {
		if !known[k.Epoch] {
			t.Errorf("record %v from epoch %x, which the agent never reported (%x)", k, k.Epoch[:], epochs)
		}
		byEpoch[k.Epoch] = append(byEpoch[k.Epoch], k.Seq)
	}
	for e, s := range byEpoch {
		slices.Sort(s)
		last := s[len(s)-1]
		if e == lastEpoch {
			if last >= next {
				t.Errorf("epoch %x: seq %d at dispatch, but the store handed out only up to %d", e[:], last, next-1)
			}
			last = next - 1
		}
		first := uint64(1)
		if salvaged[e] {
			first = s[0] // a salvaged store's epoch continues above every seq the old file handed out
		}
		var missing []uint64
		for q := first; q <= last; q++ {
			if have[recKey{e, q}] == "" {
				missing = append(missing, q)
			}
		}
		if len(missing) > 0 {
			t.Errorf("LOST %d records of epoch %x (seqs %d..%d): %v", len(missing), e[:], first, last, missing[:min(len(missing), 50)])
		}
	}
	for _, k := range acked {
		if have[k] != "event" {
			t.Errorf("the delivery %x/%d (answered 200) is not at dispatch (%q)", k.Epoch[:], k.Seq, have[k])
		}
	}
	f.mu.Lock()
	var twice int
	for k := range have {
		if f.handled[k] != 1 {
			twice++
			if twice < 10 {
				t.Errorf("dispatch handled %v %d times", k, f.handled[k])
			}
		}
	}
	f.mu.Unlock()
	if float64(len(fixes)) < stored {
		t.Errorf("dispatch has %d fixes, but /metrics counted %.0f stored", len(fixes), stored)
	}
	t.Logf("tally: %d cycles in %v (%d boots; median boot to /healthz %v); dispatch holds %d fixes (>= %.0f counted as stored) "+
		"and %d events (%d deliveries acknowledged, all there); %d records twice; store origins %v; salvaged: %v; "+
		"epochs %d; final e2fsck exit %d", done, cyclesDur.Round(time.Second), f.boots, median(bootDur), len(fixes), stored,
		len(events), len(acked), twice, origins, salv, len(epochs), fsck)
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(100 * time.Millisecond)
}

func epochOf(e uint64) sdk.Epoch {
	var out sdk.Epoch
	for i := range 8 {
		out[i] = byte(e >> (56 - 8*i))
	}
	return out
}

package truck

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/store"
)

const day = 24 * time.Hour

// fillBook writes closed orders (delivered, each with its proof's fix) and active orders straight into the
// book's buckets, in transactions of 2,000, as a year of Handle and Act would have left them.
func fillBook(tb testing.TB, st *store.Store, closed, active int, at time.Time) {
	tb.Helper()
	ctx := context.Background()
	mk := func(i int, state State) Entry {
		o := sdk.Order{ID: fmt.Sprintf("o-%06d", i), Revision: 1, Truck: "truck-0001", Created: at, Expires: at.Add(48 * time.Hour),
			Recipient: "A. Recipient", Address: fmt.Sprintf("%d Main St, 10115 Berlin", i), Lat: 52.52 + float64(i%100)*0.01,
			Lon: 13.40 + float64(i/100%100)*0.01, RadiusM: 100, Notes: "ring twice, parcel box in the yard", Status: sdk.OrderActive}
		e := Entry{Order: o, State: state, Received: at, ReceiptAt: at}
		if state != StateActive {
			fix := testFix(i)
			e.Arrived = true
			e.Action = &ActionResult{Kind: sdk.EventDelivered, Via: sdk.ViaButton, Time: at, Seq: uint64(i), Fix: &fix}
		}
		return e
	}
	var all []Entry
	for i := range closed {
		all = append(all, mk(i, StateDelivered))
	}
	for i := range active {
		e := mk(closed+i, StateActive)
		e.Order.Lat, e.Order.Lon = 48.1+float64(i)*0.01, 11.5 // far from the benchmark's fixes: no arrival
		all = append(all, e)
	}
	for len(all) > 0 {
		n := min(len(all), 2000)
		chunk := all[:n]
		all = all[n:]
		if err := st.Update(ctx, func(tx *store.Tx) error {
			for _, e := range chunk {
				if err := putEntry(tx, nil, &e, at); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkPerFixOrders is the order work the agent does for every GPS fix: the active orders, then
// CheckArrival, with 10 active orders and 0, 1,000 and 36,500 (a year at 100 a day) closed ones in the book.
//
//	go test -run '^$' -bench PerFixOrders ./sdk/truck/
func BenchmarkPerFixOrders(b *testing.B) {
	for _, closed := range []int{0, 1000, 36500} {
		b.Run(fmt.Sprintf("closed=%d", closed), func(b *testing.B) {
			st := openStore(b)
			fillBook(b, st, closed, 10, time.Now().UTC())
			office := sdktest.NewOffice(b).Verifier(b)
			book, err := NewBook(BookConfig{Store: st, Verifier: office, Truck: "truck-0001"})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			fix := sdk.Fix{Time: time.Now().UTC(), Lat: 52.0, Lon: 13.0, Mode: 3}
			b.ResetTimer()
			for b.Loop() {
				active, err := book.Active()
				if err != nil || len(active) != 10 {
					b.Fatalf("active orders: %d, %v", len(active), err)
				}
				if _, err := book.CheckArrival(ctx, fix); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPrune is the pruning's cost: removing 1,000 or 36,500 closed orders past retention (in
// transactions of 500, as Run does; per order in ns/order), and a round with nothing due in a book of
// 36,500 closed orders (what Run does every hour once it has caught up).
//
//	go test -run '^$' -bench Prune -benchtime 1x ./sdk/truck/
func BenchmarkPrune(b *testing.B) {
	for _, c := range []struct {
		name        string
		closed, due int
	}{{"due=1000", 1000, 1000}, {"due=36500", 36500, 36500}, {"due=0-of-36500", 36500, 0}} {
		b.Run(c.name, func(b *testing.B) {
			var total int
			for b.Loop() {
				b.StopTimer()
				st := openStore(b)
				now := time.Now().UTC()
				at := now.Add(-40 * day)
				if c.due == 0 {
					at = now.Add(-time.Hour)
				}
				fillBook(b, st, c.closed, 10, at)
				book, err := NewBook(BookConfig{Store: st, Verifier: sdktest.NewOffice(b).Verifier(b), Truck: "truck-0001"})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				book.pruneAll(context.Background())
				b.StopTimer()
				if got := int(book.Stats().Pruned); got != c.due {
					b.Fatalf("pruned %d, want %d", got, c.due)
				}
				total += c.due
				st.Close()
				b.StartTimer()
			}
			if total > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(total), "ns/order")
			}
		})
	}
}

// BenchmarkBookIndex is the one-time indexing of a book written before the indexes (an upgraded truck):
// one full read, at NewBook.
//
//	go test -run '^$' -bench BookIndex -benchtime 1x ./sdk/truck/
func BenchmarkBookIndex(b *testing.B) {
	for _, closed := range []int{1000, 36500} {
		b.Run(fmt.Sprintf("closed=%d", closed), func(b *testing.B) {
			st := openStore(b)
			fillBook(b, st, closed, 10, time.Now().UTC())
			v := sdktest.NewOffice(b).Verifier(b)
			for b.Loop() {
				b.StopTimer()
				if err := st.Update(context.Background(), func(tx *store.Tx) error { return tx.Delete(metaBucket, keyIndex) }); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				book, err := NewBook(BookConfig{Store: st, Verifier: v, Truck: "truck-0001"})
				if err != nil || !book.indexed.Load() {
					b.Fatalf("not indexed: %v", err)
				}
			}
		})
	}
}

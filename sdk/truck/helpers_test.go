package truck

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/transport"
	"github.com/waybill-iot/waybill/store"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// arrival is the first delivery of one record at the consumer.
type arrival struct {
	event  bool   // critical lane (a delivery event); otherwise a fix
	seq    uint64 // record sequence number in the truck's store
	msg    int    // index of the message that carried it, in delivery order
	single bool   // a telemetry message carrying only this fix (the uploader's live fix looks like this)
}

// consumer is a dispatch-side subscriber that verifies every message and drops duplicate fixes and events
// by (truck, epoch, record seq).
type consumer struct {
	mu       sync.Mutex
	fixes    map[string]sdk.Fix // "truck/epoch/seq"
	events   map[string]*sdk.Event
	dups     int
	rejected int
	order    []uint64  // fix seqs in arrival order
	arrivals []arrival // first arrivals of records of both lanes, in order
	msgs     int       // messages accepted by the verifier
	changed  chan struct{}
	rc       *testReceipter // nil: no receipts
	// drop, if set, loses a verified message before it is recorded (acknowledged to the broker all the
	// same), as Mosquitto does for a slow subscriber or a foreign member of a share group.
	drop func(*sdk.Message) bool
}

func newConsumer() *consumer {
	return &consumer{fixes: map[string]sdk.Fix{}, events: map[string]*sdk.Event{}, changed: make(chan struct{}, 1)}
}

func (c *consumer) handle(v *sdk.Verifier) func(ctx context.Context, m transport.Message) error {
	return func(ctx context.Context, m transport.Message) error {
		msg, err := v.Verify(ctx, m.Topic, m.Payload)
		c.mu.Lock()
		defer c.mu.Unlock()
		defer func() {
			select {
			case c.changed <- struct{}{}:
			default:
			}
		}()
		if errors.Is(err, sdk.ReasonDuplicate) {
			c.dups++
			c.receipt(msg) // committed before: receipt it again (the last receipt may have been lost)
			return nil
		}
		if err != nil {
			c.rejected++
			return nil // acknowledged: a bad message is not retried
		}
		if c.drop != nil && c.drop(msg) {
			return nil
		}
		defer c.receipt(msg) // once "committed" (in the maps)
		idx := c.msgs
		c.msgs++
		switch {
		case msg.Telemetry != nil:
			for _, f := range msg.Telemetry.Fixes {
				k := fmt.Sprintf("%s/%x/%d", msg.Sender, msg.Telemetry.Epoch, f.Seq)
				if _, ok := c.fixes[k]; ok {
					c.dups++
					continue
				}
				c.fixes[k] = f.Fix
				c.order = append(c.order, f.Seq)
				c.arrivals = append(c.arrivals, arrival{seq: f.Seq, msg: idx, single: len(msg.Telemetry.Fixes) == 1})
			}
		case msg.Event != nil:
			k := fmt.Sprintf("%s/%x/%d", msg.Sender, msg.Event.Epoch, msg.Event.RecordSeq)
			if _, ok := c.events[k]; ok {
				c.dups++
				return nil
			}
			c.events[k] = msg.Event
			c.arrivals = append(c.arrivals, arrival{event: true, seq: msg.Event.RecordSeq, msg: idx})
		}
		return nil
	}
}

// receipt names msg's records to the receipter, if any.
func (c *consumer) receipt(msg *sdk.Message) {
	switch {
	case c.rc == nil || msg == nil:
	case msg.Telemetry != nil:
		seqs := make([]uint64, len(msg.Telemetry.Fixes))
		for i, f := range msg.Telemetry.Fixes {
			seqs[i] = f.Seq
		}
		c.rc.add(msg.Sender, msg.Telemetry.Epoch, seqs...)
	case msg.Event != nil:
		c.rc.add(msg.Sender, msg.Event.Epoch, msg.Event.RecordSeq)
	}
}

func (c *consumer) counts() (fixes, events int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.fixes), len(c.events)
}

// orderStats describes the order in which records of one lane first reached the consumer.
type orderStats struct {
	Records int
	// Displaced is the fewest records that must be taken out for the rest to be in store order (records minus
	// the longest increasing run of sequence numbers): each live fix sent ahead of the backlog counts one.
	Displaced int
	// Late counts records that arrived after a record of the same lane with a higher sequence number, not
	// counting fixes that came alone in a message (the live fix sent ahead of the backlog on each connection).
	Late int
}

func (o orderStats) String() string {
	return fmt.Sprintf("%d records, %d displaced, %d late", o.Records, o.Displaced, o.Late)
}

// laneOrder measures the arrival order of one lane's records (event true: critical lane).
func laneOrder(arrivals []arrival, event bool) orderStats {
	var seqs []uint64
	var alone []bool
	for _, a := range arrivals {
		if a.event == event {
			seqs = append(seqs, a.seq)
			alone = append(alone, a.single)
		}
	}
	return seqOrder(seqs, alone)
}

// seqOrder measures seqs in arrival order; alone[i] marks a fix that came in a one-fix message (nil: none).
func seqOrder(seqs []uint64, alone []bool) orderStats {
	s := orderStats{Records: len(seqs)}
	var tails []uint64 // tails[i]: smallest tail of an increasing run of length i+1
	var highest uint64
	for i, q := range seqs {
		if q < highest {
			s.Late++
		}
		if alone == nil || !alone[i] {
			highest = max(highest, q)
		}
		j := sort.Search(len(tails), func(i int) bool { return tails[i] >= q })
		if j == len(tails) {
			tails = append(tails, q)
		} else {
			tails[j] = q
		}
	}
	s.Displaced = len(seqs) - len(tails)
	return s
}

// criticalFirst counts, for the records of a backlog queued at once, the events that reached the consumer
// after at least one fix of that backlog carried in a batch (not a one-fix message, which may be a live fix),
// and the number of such batch fixes that came before the last event.
func criticalFirst(arrivals []arrival, inBacklog func(seq uint64) bool) (lateEvents, fixesAhead int) {
	lastEvent := -1
	for i, a := range arrivals {
		if a.event && inBacklog(a.seq) {
			lastEvent = i
		}
	}
	batchFixes := 0
	for i, a := range arrivals {
		if !inBacklog(a.seq) {
			continue
		}
		if a.event {
			if batchFixes > 0 {
				lateEvents++
			}
			continue
		}
		if !a.single {
			batchFixes++
			if i < lastEvent {
				fixesAhead++
			}
		}
	}
	return lateEvents, fixesAhead
}

func signerFor(t testing.TB, cl sdktest.Client, st *store.Store) *sdk.Signer {
	t.Helper()
	pair, err := pki.LoadKeyPair(cl.CertFile, cl.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.LoadCertificate(cl.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := NewStoreSequencer(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sdk.NewSigner(sdk.SignerConfig{Certificate: cert, Key: pair.PrivateKey.(crypto.Signer), Sequencer: seq})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testFix(i int) sdk.Fix {
	return sdk.Fix{
		Time: time.Now().UTC().Add(time.Duration(i-5000) * time.Second).Truncate(time.Millisecond),
		Lat:  52.52 + float64(i)*0.0001, Lon: 13.40 + float64(i)*0.00005, Mode: 3,
		Speed: 12.5, Course: 45, Sats: 9, HDOP: 0.9,
		Has: sdk.FixSpeed | sdk.FixCourse | sdk.FixSats | sdk.FixHDOP,
	}
}

// driveFixes returns n fixes at 1 Hz of a truck in city traffic ending now: accelerating, stopping at lights,
// turning, with receiver noise and NMEA rounding (a port of the sdk package's test drive). Its second
// differences are what a real receiver gives the telemetry codec, unlike testFix's straight line.
func driveFixes(n int, seed uint64) []sdk.Fix {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	const mPerDegLat = 111_320.0
	lat, lon := 52.520008, 13.404954
	heading := r.Float64() * 360
	speed, target := 0.0, 11.0
	stopFor, turnLeft, turnRate := 0, 0.0, 0.0
	errN, errE, alt, climb := 0.0, 0.0, 38.0, 0.0
	sats, hdop := 10, 0.9
	start := time.Now().UTC().Add(-time.Duration(n) * time.Second).Truncate(time.Second)
	out := make([]sdk.Fix, n)
	for i := range out {
		switch {
		case stopFor > 0:
			stopFor--
			speed = 0
			if stopFor == 0 {
				target = 8 + r.Float64()*6
			}
		case target == 0:
			speed = math.Max(0, speed-1.5-r.Float64())
			if speed == 0 {
				stopFor = 10 + r.IntN(30)
			}
		default:
			speed = math.Max(0, speed+math.Max(-2, math.Min(2, (target-speed)*0.4))+r.NormFloat64()*0.15)
			if r.IntN(60) == 0 {
				target = 0
			}
		}
		if turnLeft == 0 && speed > 3 && r.IntN(40) == 0 {
			turnLeft, turnRate = 90, 8+r.Float64()*7
			if r.IntN(2) == 0 {
				turnRate = -turnRate
			}
		}
		if turnLeft > 0 {
			step := math.Min(turnLeft, math.Abs(turnRate))
			heading += math.Copysign(step, turnRate)
			turnLeft -= step
		} else {
			heading += r.NormFloat64() * 0.3
		}
		heading = math.Mod(heading+360, 360)
		rad := heading * math.Pi / 180
		lat += speed * math.Cos(rad) / mPerDegLat
		lon += speed * math.Sin(rad) / (mPerDegLat * math.Cos(lat*math.Pi/180))
		if r.IntN(120) == 0 {
			climb = r.NormFloat64() * 0.04
		}
		alt += climb * speed
		errN = 0.95*errN + r.NormFloat64()*0.25
		errE = 0.95*errE + r.NormFloat64()*0.25
		if r.IntN(30) == 0 {
			sats = max(6, min(16, sats+r.IntN(3)-1))
			hdop = math.Round((0.6+8/float64(sats)*0.3+r.Float64()*0.1)*100) / 100
		}
		f := sdk.Fix{
			Time: start.Add(time.Duration(i) * time.Second),
			Lat:  math.Round((lat+errN/mPerDegLat)*60e5) / 60e5,
			Lon:  math.Round((lon+errE/(mPerDegLat*math.Cos(lat*math.Pi/180)))*60e5) / 60e5,
			Alt:  math.Round((alt+r.NormFloat64()*0.3)*10) / 10,
			Mode: 3, Sats: sats, HDOP: hdop,
			Has: sdk.FixAlt | sdk.FixSpeed | sdk.FixSats | sdk.FixHDOP,
		}
		f.Speed = math.Max(0, math.Round((speed+r.NormFloat64()*0.07)/0.514444*1000)*0.514444/1000)
		if speed > 0.5 {
			f.Course = math.Mod(math.Round((heading+r.NormFloat64()*0.5)*100)/100+360, 360)
			f.Has |= sdk.FixCourse
		}
		out[i] = f
	}
	return out
}

// backlogEntries returns nFixes driving fixes with nEvents delivery events spread evenly among them, in
// append order.
func backlogEntries(t testing.TB, nFixes, nEvents int) []store.Entry {
	t.Helper()
	entries := make([]store.Entry, 0, nFixes+nEvents)
	every := max(nFixes/max(nEvents, 1), 1)
	events := 0
	for i, f := range driveFixes(nFixes, 1) {
		e, err := EncodeFix(f)
		if err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
		if i%every == 0 && events < nEvents {
			events++
			ev, err := EncodeEvent(sdk.Event{Kind: sdk.EventDelivered, Time: f.Time, OrderID: fmt.Sprintf("o-%d", i),
				Revision: 1, Via: sdk.ViaButton, Fix: ptr(f)})
			if err != nil {
				t.Fatal(err)
			}
			entries = append(entries, ev)
		}
	}
	return entries
}

// openStore opens a fresh store in a temporary directory, closed when the test ends.
func openStore(t testing.TB) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "queue.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// storeEmpty reports whether every record was acked.
func storeEmpty(st *store.Store) bool {
	s := st.Stats()
	return s.Critical.Records == 0 && s.Normal.Records == 0
}

// fleetVerifier is a dispatch-side verifier for the broker's PKI, accepting messages up to two days old.
func fleetVerifier(t testing.TB, cl sdktest.Client) *sdk.Verifier {
	t.Helper()
	return cl.Verifier(t, sdk.VerifierConfig{MaxAge: sdk.MaxAge{Telemetry: 48 * time.Hour, Event: 48 * time.Hour}})
}

// fleetSubscriptions subscribes a dispatch client to every truck's telemetry and events.
func fleetSubscriptions() []transport.Subscription {
	var topics sdk.Topics
	return []transport.Subscription{{Topic: topics.FleetFilter(sdk.KindTelemetry), QoS: 1},
		{Topic: topics.FleetFilter(sdk.KindEvents), QoS: 1}}
}

func startLink(t testing.TB, ctx context.Context, wg *sync.WaitGroup, addr string, cl sdktest.Client, cfg transport.Config) *transport.Conn {
	t.Helper()
	cfg.Brokers = []string{"mqtts://" + addr}
	cfg.ClientID = cl.Name
	cfg.CertFile, cfg.KeyFile, cfg.CAFile = cl.CertFile, cl.KeyFile, cl.CAFile
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
	}
	c, err := transport.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.Run(ctx)
	}()
	return c
}

func ptr[T any](v T) *T { return &v }

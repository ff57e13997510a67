package vm

// The fleet around the virtual truck: Mosquitto with the configuration our tools generate (sdktest), the
// dispatch office (dispatch.Client with the archive as its record), and the truck: its disk image, its
// initramfs and the boots of the machine.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/gps/gpssim"
	"github.com/waybill-iot/waybill/sdk"
	"github.com/waybill-iot/waybill/sdk/dispatch"
	"github.com/waybill-iot/waybill/sdk/dispatch/archive"
	"github.com/waybill-iot/waybill/sdk/pki"
	"github.com/waybill-iot/waybill/sdk/sdktest"
	"github.com/waybill-iot/waybill/sdk/sdktest/officetest"
)

const (
	truckName  = "truck-vm"
	officeName = "office"
	httpToken  = "vm-test-token-0123456789abcdef"
)

// The assets and the agent binary are prepared once per architecture and test binary.
var (
	prepMu  sync.Mutex // guards the fields below
	prepDir string
	preps   = map[Arch]*prep{}
)

type prep struct {
	a     Assets
	agent string
	err   error
}

// relayArg, as the test binary's first argument, makes it the relay of one forwarded connection
// (Config.Relay): QEMU runs it with the guest's connection on stdin and stdout.
const relayArg = "waybill-vm-relay"

// guestBrokerPort is the broker's port as the guest sees it, at GuestRelay.
const guestBrokerPort = 8883

func TestMain(m *testing.M) {
	if len(os.Args) == 3 && os.Args[1] == relayArg {
		os.Exit(relayMain(os.Args[2]))
	}
	code := m.Run()
	if prepDir != "" {
		os.RemoveAll(prepDir)
	}
	os.Exit(code)
}

func relayMain(addr string) int {
	conn, err := net.FileConn(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "waybill-vm-relay: stdin is not QEMU's socket: %v\n", err)
		return 2
	}
	if err := Relay(context.Background(), conn, addr); err != nil {
		fmt.Fprintln(os.Stderr, "waybill-vm-relay:", err)
		return 1
	}
	return 0
}

// prepare fetches arch's kernel and busybox (installing them as root; otherwise the test fails with the
// command) and cross-compiles the agent for it.
func prepare(t testing.TB, arch Arch) (Assets, string) {
	t.Helper()
	prepMu.Lock()
	defer prepMu.Unlock()
	p := preps[arch]
	if p == nil {
		p = &prep{}
		preps[arch] = p
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cache, err := CacheDir()
		if err == nil && prepDir == "" {
			prepDir, err = os.MkdirTemp("", "wbvm-agent-")
		}
		if err == nil {
			p.a, err = Fetch(ctx, cache, arch, t.Logf)
		}
		if err == nil {
			p.agent = filepath.Join(prepDir, "waybill-agent-"+string(arch))
			err = BuildAgent(ctx, "../../..", p.agent, arch) // the module root
		}
		p.err = err
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.a, p.agent
}

// recKey identifies a record for good: (store epoch, record seq) of the one truck.
type recKey struct {
	Epoch sdk.Epoch
	Seq   uint64
}

// fleet is one test's Mosquitto, PKI, office and truck.
type fleet struct {
	t       testing.TB
	b       *sdktest.Broker
	dir     string // short: it holds QEMU's unix sockets
	archive string
	relay   []string // Config.Relay: this test binary, as the relay

	mu      sync.Mutex // guards handled
	handled map[recKey]int

	office *officetest.Office

	assets   Assets
	initrd   string
	disk     string
	httpPort int
	boots    int
}

type fleetOptions struct {
	Button bool   // the agent's button on gpiochip0 line 3, the LED on line 4
	Baud   string // gps.baud; zero: "9600"
	Arch   Arch   // zero: testArch()
	// Defaults leaves the agent's timings (broker, filter, store batching) at their defaults, as on a
	// deployed truck; otherwise they are short, for tests (allow_test_timings).
	Defaults bool
}

func newFleet(t testing.TB, o fleetOptions) *fleet {
	t.Helper()
	if o.Arch == "" {
		o.Arch = testArch(t)
	}
	a, agent := prepare(t, o.Arch)
	t.Logf("the truck: %s, kernel %s on %s (WAYBILL_VM_ARCH picks arm64 or armhf)", a.Arch, a.Release, a.Arch.QEMU())
	dir, err := os.MkdirTemp("", "wbvm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p, err := pki.Init(pki.Config{Dir: filepath.Join(dir, "pki")}, pki.CAOptions{Fleet: "vm"})
	if err != nil {
		t.Fatal(err)
	}
	// The guest reaches the broker at GuestRelay:brokerPort (the only connection out): the broker's
	// certificate names that address.
	if _, err := p.Issue(pki.RoleBroker, sdktest.BrokerName, pki.IssueOptions{Hosts: []string{GuestRelay}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Issue(pki.RoleTruck, truckName, pki.IssueOptions{}); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, dir: dir, assets: a, handled: map[recKey]int{}, archive: filepath.Join(dir, "office", archive.File),
		relay: []string{exe, relayArg}}
	f.b = sdktest.StartMosquitto(t, sdktest.Options{PKI: p, Dispatch: []string{officeName}})
	// Stopped when the test ends, or by f.office.Stop before the archive file is read.
	f.office = officetest.Start(t, f.b, officetest.Options{Name: officeName, ArchivePath: f.archive,
		OutboxPath: filepath.Join(dir, "office", "outbox.db"), Handle: f.handle, Trucks: []string{truckName}})

	f.initrd = filepath.Join(dir, "initrd")
	if err := WriteInitramfs(f.initrd, a, agent); err != nil {
		t.Fatal(err)
	}
	f.httpPort = freePort(t)
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(src, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	cl := f.b.ClientFiles(truckName)
	for from, to := range map[string]string{cl.CAFile: "ca.crt", cl.CertFile: "truck.crt", cl.KeyFile: "truck.key"} {
		raw, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "etc", to), raw, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var c strings.Builder
	fmt.Fprintf(&c, "data_dir = %q\n", GuestDataDir)
	if !o.Defaults {
		fmt.Fprintf(&c, "allow_test_timings = true\n")
	}
	fmt.Fprintf(&c, "[identity]\ncert = \"/truck/etc/truck.crt\"\nkey = \"/truck/etc/truck.key\"\nca = \"/truck/etc/ca.crt\"\n")
	fmt.Fprintf(&c, "[broker]\nurls = [\"mqtts://%s:%d\"]\n", GuestRelay, guestBrokerPort)
	if !o.Defaults {
		fmt.Fprintf(&c, "keep_alive = \"3s\"\nbackoff_max = \"1s\"\nreconnect_window = \"1s\"\nreceipt_timeout = \"2s\"\n")
	}
	if o.Baud == "" {
		o.Baud = "9600"
	}
	fmt.Fprintf(&c, "[gps]\ndevice = \"/dev/ttyAMA0\"\nbaud = %q\n", o.Baud)
	if !o.Defaults {
		fmt.Fprintf(&c, "[gps.filter]\nmode = \"thresholds\"\nperiod = \"1s\"\nmin_interval = \"1s\"\n[store]\nfix_batch = 3\nfix_delay = \"500ms\"\n")
	}
	fmt.Fprintf(&c, "[http]\nlisten = \"0.0.0.0:%d\"\ntoken = %q\n", GuestHTTPPort, httpToken)
	if o.Button {
		fmt.Fprintf(&c, "[button]\nchip = \"gpiochip0\"\nline = 3\nled_line = 4\nactive_high = true\nno_pull = true\n")
	}
	if err := os.WriteFile(filepath.Join(src, "etc", "agent.toml"), []byte(c.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	f.disk = filepath.Join(dir, "disk.img")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := MakeDisk(ctx, f.disk, 64, src); err != nil {
		t.Fatal(err)
	}
	return f
}

// testArch is the truck the tests boot: $WAYBILL_VM_ARCH (arm64 or armhf), else arm64.
func testArch(t testing.TB) Arch {
	switch a := Arch(os.Getenv("WAYBILL_VM_ARCH")); a {
	case "":
		return ARM64
	case ARM64, ARMv7:
		return a
	default:
		t.Fatalf("WAYBILL_VM_ARCH=%q: want %s or %s", a, ARM64, ARMv7)
		return ""
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (f *fleet) handle(_ context.Context, u dispatch.Update) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, x := range u.Fixes {
		f.handled[recKey{x.Epoch, x.Seq}]++
	}
	if u.Event != nil {
		f.handled[recKey{u.Event.Event.Epoch, u.Event.Event.RecordSeq}]++
	}
	return nil
}

func (f *fleet) createOrders(ids ...string) {
	f.t.Helper()
	for _, id := range ids {
		_, err := f.office.Outbox.Create(context.Background(), sdk.Order{ID: id, Truck: truckName, Expires: time.Now().Add(time.Hour),
			Recipient: "R. " + id, Address: "1 Quay St", Lat: 52.5, Lon: 13.4, RadiusM: 50})
		if err != nil {
			f.t.Fatal(err)
		}
	}
}

// boot is one boot of the truck: the machine and the GPS receiver feeding its UART.
type boot struct {
	f      *fleet
	m      *Machine
	n      int
	cancel context.CancelFunc
	gps    context.CancelFunc // stops the receiver only
	wg     sync.WaitGroup
}

// boot powers the truck on with the disk on cache mode; gps feeds the simulator's NMEA into the UART.
// The machine is killed and waited for when the test ends, whatever happens.
func (f *fleet) boot(cache string, gps bool, trace ...string) *boot {
	f.t.Helper()
	f.boots++
	dir := filepath.Join(f.dir, "b"+strconv.Itoa(f.boots))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m, err := Start(ctx, Config{Arch: f.assets.Arch, Kernel: f.assets.Kernel, Initrd: f.initrd, Disk: f.disk, Cache: cache, Dir: dir,
		HTTPPort: f.httpPort, Trace: trace, Forwards: map[int]string{guestBrokerPort: f.b.Addr}, Relay: f.relay})
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	gctx, gcancel := context.WithCancel(ctx)
	b := &boot{f: f, m: m, n: f.boots, cancel: cancel, gps: gcancel}
	f.t.Cleanup(b.cut)
	if gps {
		b.wg.Add(1)
		go func() { // owned: cut and stopGPS wait on wg
			defer b.wg.Done()
			b.feedGPS(gctx, uint64(b.n))
		}()
	}
	return b
}

// stopGPS unplugs the receiver: the UART's socket closes and no more NMEA comes.
func (b *boot) stopGPS() {
	b.gps()
	b.wg.Wait()
}

// feedGPS writes the simulator's NMEA into the UART at 1 Hz, in GPS time now, until the machine dies or
// ctx ends.
func (b *boot) feedGPS(ctx context.Context, seed uint64) {
	conn, err := b.m.DialUART(ctx)
	if err != nil {
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); io.Copy(io.Discard, conn) }() // ends when conn is closed
	sim := gpssim.New(gpssim.Config{Route: gpssim.RouteConfig{Seed: seed, LostFixRate: -1, TunnelLen: -1}})
	sim.Run(ctx, conn)
	conn.Close()
	wg.Wait()
}

// cut is the power cut: SIGKILL of QEMU, waited for, then the receiver stops. Safe to call twice.
func (b *boot) cut() {
	b.m.Kill()
	b.cancel()
	b.wg.Wait()
}

// health is the part of /healthz the tests read.
type health struct {
	GPS       string `json:"gps"`
	Connected bool   `json:"connected"`
	Queue     struct {
		Critical    int64 `json:"critical"`
		Normal      int64 `json:"normal"`
		Unreceipted int   `json:"unreceipted"`
		InMemory    int   `json:"in_memory"`
	} `json:"queue"`
	Store struct {
		Epoch  sdk.Epoch `json:"epoch"`
		Origin string    `json:"origin"`
		Detail string    `json:"detail"`
	} `json:"store"`
}

func (b *boot) request(ctx context.Context, method, path string, body io.Reader) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://127.0.0.1:%d%s", b.f.httpPort, path), body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+httpToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	return resp.StatusCode, raw, err
}

func (b *boot) healthz(ctx context.Context) (health, error) {
	var h health
	code, raw, err := b.request(ctx, "GET", "/healthz", nil)
	if err != nil {
		return h, err
	}
	if code != http.StatusOK && code != http.StatusServiceUnavailable {
		return h, fmt.Errorf("GET /healthz: %d %s", code, raw)
	}
	return h, json.Unmarshal(raw, &h)
}

// waitHealth polls /healthz until cond holds, failing after d with the console's tail.
func (b *boot) waitHealth(d time.Duration, what string, cond func(health) bool) health {
	t := b.f.t
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		select {
		case <-b.m.Exited():
			t.Fatalf("boot %d: the machine ended (%v) while waiting for %s:\n%s\n%s", b.n, b.m.ExitErr(), what,
				lastLines(b.m.Console(), 60), b.m.QEMULog())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		h, err := b.healthz(ctx)
		cancel()
		if err == nil && cond(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("boot %d: no %s within %v (healthz %+v, %v):\n%s", b.n, what, d, h, err, lastLines(b.m.Console(), 60))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metric reads one series of /metrics.
func (b *boot) metric(ctx context.Context, series string) (float64, error) {
	code, raw, err := b.request(ctx, "GET", "/metrics", nil)
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %d", code)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, nil
}

// deliverNext confirms the first active order through the HTTP hook. It returns the event's record when
// the agent answered 200 (the proof is on its disk), ok false when there was nothing to confirm or the
// request failed (the power may be cut in the middle: then nothing was acknowledged).
func (b *boot) deliverNext(ctx context.Context) (recKey, string, bool) {
	code, raw, err := b.request(ctx, "GET", "/api/orders?state=active", nil)
	if err != nil || code != http.StatusOK {
		return recKey{}, "", false
	}
	var list struct {
		Orders []struct {
			ID string `json:"id"`
		} `json:"orders"`
	}
	if json.Unmarshal(raw, &list) != nil || len(list.Orders) == 0 {
		return recKey{}, "", false
	}
	id := list.Orders[rand.IntN(len(list.Orders))].ID
	code, raw, err = b.request(ctx, "POST", "/api/orders/"+id+"/delivered", strings.NewReader("{}"))
	if err != nil || code != http.StatusOK {
		return recKey{}, "", false
	}
	var out struct {
		Event struct {
			Seq uint64 `json:"seq"`
		} `json:"event"`
	}
	if json.Unmarshal(raw, &out) != nil || out.Event.Seq == 0 {
		b.f.t.Errorf("POST /api/orders/%s/delivered: 200 %s", id, raw)
		return recKey{}, "", false
	}
	return recKey{Seq: out.Event.Seq}, id, true
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

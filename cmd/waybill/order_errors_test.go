package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/waybill-iot/waybill/sdk/sdktest"
)

// TestOrderCreateBrokerDown (issue 11.4): with the broker down, order create says why on every attempt,
// exits 3 (stored, not sent yet) naming the connection error, and the order stays in the outbox. The broker
// is given as HOST:PORT, which means mqtts://HOST:PORT (issue 11.6).
func TestOrderCreateBrokerDown(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	b.Stop()
	data := filepath.Join(t.TempDir(), "dispatch")
	code, out, errOut := runCmd(t, "order", "create", "--truck", "truck-1", "--id", "o-1", "--lat", "51.5", "--lon", "-0.1",
		"--wait", "3s", "--data", data, "--pki", b.PKI.Dir(), "--broker", b.Addr)
	if code != exitNotSent {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, exitNotSent, out, errOut)
	}
	refused := "broker mqtts://" + b.Addr + ": connection refused — is Mosquitto running"
	if !strings.Contains(out, "not sent yet ("+refused) || !strings.Contains(out, "safe in the outbox") {
		t.Errorf("stdout does not give the reason:\n%s", out)
	}
	if !strings.Contains(errOut, "attempt 1 (") || !strings.Contains(errOut, refused) {
		t.Errorf("stderr shows no progress:\n%s", errOut)
	}
	code, out, errOut = runCmd(t, "order", "list", "--data", data)
	if code != 0 || !regexp.MustCompile(`truck-1 +o-1 +1 +pending`).MatchString(out) {
		t.Fatalf("order list after a failed send: exit %d\n%s\n%s", code, out, errOut)
	}
	code, _, errOut = runCmd(t, "order", "create", "--help")
	if code != 0 || !strings.Contains(errOut, "3 stored in the") {
		t.Errorf("--help does not document exit status 3:\n%s", errOut)
	}
}

// TestOrderCancelDelivered (issue 11.3): a cancellation that reaches the truck after the driver delivered
// the order is refused (exit 1, saying the order stays delivered); a second one is refused at once; the
// list shows the delivery and the refused cancel.
func TestOrderCancelDelivered(t *testing.T) {
	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
	b.Truck("truck-1")
	data := filepath.Join(t.TempDir(), "dispatch")
	common := []string{"--online-grace", "200ms", "--data", data, "--pki", b.PKI.Dir(), "--broker", "mqtts://" + b.Addr}
	tt := startTestTruck(t, b, b.ClientFiles("truck-1"))
	code, out, errOut := runCmd(t, append([]string{"order", "create", "--truck", "truck-1", "--id", "o-1", "--lat", "51.5",
		"--lon", "-0.1", "--wait", "20s"}, common...)...)
	if code != 0 || !strings.Contains(out, "confirmed: truck-1 received revision 1") {
		t.Fatalf("create: exit %d\n%s\n%s", code, out, errOut)
	}
	tt.deliver("o-1", 1) // the broker queues the event for the office's session until a command connects

	cancel := append([]string{"order", "cancel", "--truck", "truck-1", "--id", "o-1", "--wait", "20s"}, common...)
	code, out, errOut = runCmd(t, cancel...)
	if code != 1 || !strings.Contains(out, "REFUSED: truck-1 had already delivered the order") ||
		!strings.Contains(out, "stays delivered (cancel refused)") || !strings.Contains(errOut, "refused by the truck") {
		t.Fatalf("cancel after delivery: exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runCmd(t, "order", "list", "--data", data)
	if code != 0 || !regexp.MustCompile(`truck-1 +o-1 +2 +delivered \(cancel refused\)`).MatchString(out) {
		t.Fatalf("order list: exit %d\n%s\n%s", code, out, errOut)
	}

	// Create another order and deliver it; once the outbox knows, a cancel is refused without sending.
	code, out, errOut = runCmd(t, append([]string{"order", "create", "--truck", "truck-1", "--id", "o-2", "--lat", "51.5",
		"--lon", "-0.1", "--wait", "20s"}, common...)...)
	if code != 0 {
		t.Fatalf("create o-2: exit %d\n%s\n%s", code, out, errOut)
	}
	tt.deliver("o-2", 1)
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Each order command drains the session's queue into the outbox: an order for an offline truck.
		runCmd(t, append([]string{"order", "create", "--truck", "truck-9", "--id", "o-9", "--lat", "1", "--lon", "1",
			"--wait", "1s"}, common...)...)
		_, out, _ = runCmd(t, "order", "list", "--data", data)
		if regexp.MustCompile(`truck-1 +o-2 +1 +delivered`).MatchString(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("o-2 never shown delivered:\n%s", out)
		}
	}
	code, out, errOut = runCmd(t, append([]string{"order", "cancel", "--truck", "truck-1", "--id", "o-2"}, common...)...)
	if code != 1 || !strings.Contains(errOut, "truck-1/o-2 was delivered at ") || !strings.Contains(errOut, "the order stays delivered") {
		t.Fatalf("cancel of a known delivery: exit %d, want 1\n%s\n%s", code, out, errOut)
	}
	if _, out, _ = runCmd(t, "order", "list", "--data", data); !regexp.MustCompile(`truck-1 +o-2 +1 +delivered`).MatchString(out) {
		t.Fatalf("the refused cancel changed the order:\n%s", out)
	}
}

// TestBrokerFlagForms (issue 11.6, 11.9): HOST:PORT means mqtts://HOST:PORT, and the agent's WAYBILL_BROKERS
// is the default when WAYBILL_BROKER is not set.
func TestBrokerFlagForms(t *testing.T) {
	if got := brokerURLs("127.0.0.1:29183, mqtts://b:1,mqtt://c"); strings.Join(got, " ") != "mqtts://127.0.0.1:29183 mqtts://b:1 mqtt://c" {
		t.Errorf("brokerURLs: %q", got)
	}
	t.Setenv("WAYBILL_BROKER", "")
	t.Setenv("WAYBILL_BROKERS", "mqtts://agent.example:8883")
	if got := brokerEnv(); got != "mqtts://agent.example:8883" {
		t.Errorf("with only WAYBILL_BROKERS: %q", got)
	}
	t.Setenv("WAYBILL_BROKER", "mqtts://office.example:8883")
	if got := brokerEnv(); got != "mqtts://office.example:8883" {
		t.Errorf("WAYBILL_BROKER does not win: %q", got)
	}
	d := dispatchFlags{broker: "mqtt://127.0.0.1:1883"}
	if err := d.checkBroker(); err == nil || !strings.Contains(err.Error(), "--allow-plaintext") {
		t.Errorf("plaintext without --allow-plaintext: %v", err)
	}
	d.allowPlaintext = true
	if err := d.checkBroker(); err != nil {
		t.Errorf("plaintext with --allow-plaintext: %v", err)
	}
}

// TestWatchSecondProcess (issue 11.6): a second watch on the same data directory checks its flags before
// waiting, then waits at most --lock-wait and names the process holding the lock and what to do.
func TestWatchSecondProcess(t *testing.T) {
	dir := newCmdPKI(t)
	data := filepath.Join(t.TempDir(), "dispatch")
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	lock, got, _, err := tryLock(data, "waybill watch")
	if err != nil || !got {
		t.Fatalf("lock: %v %v", got, err)
	}
	defer lock.release()
	t.Setenv("WAYBILL_BROKER", "")
	t.Setenv("WAYBILL_BROKERS", "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	runCtx := func(args ...string) (int, string) {
		var out, errb sdktest.SyncBuffer
		code := run(ctx, streams{strings.NewReader(""), &out, &errb}, args)
		return code, errb.String()
	}
	code, errOut := runCtx("watch", "--data", data, "--pki", dir)
	if code != 2 || !strings.Contains(errOut, "no broker") {
		t.Fatalf("watch without --broker: exit %d: %s", code, errOut)
	}
	code, errOut = runCtx("watch", "--data", data, "--pki", dir, "--broker", "127.0.0.1:1", "--lock-wait", "300ms")
	want := "another waybill process (pid " + strconv.Itoa(os.Getpid()) + ", waybill watch) holds " + filepath.Join(data, senderLock)
	if code != 1 || !strings.Contains(errOut, want) || !strings.Contains(errOut, "--data DIR") {
		t.Fatalf("second watch: exit %d, want 1 saying %q:\n%s", code, want, errOut)
	}
	if ctx.Err() != nil {
		t.Fatal("the second watch did not give up after --lock-wait")
	}
}

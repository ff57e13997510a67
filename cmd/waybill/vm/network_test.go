package vm

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestNetworkIsLocal shows that the truck's traffic stays on this machine: QEMU's user network is
// restricted, so the guest reaches the broker through its one forward (GuestRelay:8883) and nothing else,
// not even the host's loopback through the gateway (which an unrestricted user network allows).
func TestNetworkIsLocal(t *testing.T) {
	f := newFleet(t, fleetOptions{})
	b := f.boot("none", false)
	b.waitHealth(90*time.Second, "/healthz", func(health) bool { return true })
	_, brokerPort, _ := net.SplitHostPort(f.b.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// busybox nc connects, runs true with the connection and ends; a connection refused or dropped fails.
	probe := func(host, port string) (bool, string) {
		out, code, err := b.m.Exec(ctx, fmt.Sprintf("nc -w3 %s %s -e /bin/true 2>&1 </dev/null; echo rc=$?", host, port))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "Usage:") {
			t.Fatalf("busybox nc refused its arguments: %s", out)
		}
		return code == 0 && strings.Contains(out, "rc=0"), strings.TrimSpace(out)
	}
	if ok, out := probe(GuestRelay, fmt.Sprint(guestBrokerPort)); !ok {
		t.Errorf("the guest cannot reach the broker's forward %s:%d: %s", GuestRelay, guestBrokerPort, out)
	}
	for _, dst := range [][2]string{
		{GuestHost, brokerPort}, // the host's loopback, through the gateway
		{GuestHost, "22"},
		{"10.0.2.3", "53"},   // QEMU's DNS
		{"192.0.2.1", "443"}, // beyond the host (TEST-NET-1)
	} {
		if ok, out := probe(dst[0], dst[1]); ok {
			t.Errorf("the guest reached %s:%s, which the restricted network must refuse: %s", dst[0], dst[1], out)
		} else {
			t.Logf("%s:%s refused: %s", dst[0], dst[1], out)
		}
	}
}

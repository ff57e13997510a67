package office_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestConsoleSeesTheOtherOffice: two office processes on one PostgreSQL database. A console's event stream
// on office A gets the order that office B created, at once, not at the console's next refresh.
func TestConsoleSeesTheOtherOffice(t *testing.T) {
	r := startTwoOffices(t)
	a, bo := r.a, r.bo

	req, _ := http.NewRequest("GET", a.base+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("event stream: %s", resp.Status)
	}
	lines := make(chan string, 64)
	go func() { // ends when the body is closed
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	time.Sleep(300 * time.Millisecond) // office A listening for B's changes (it started before the stream)
	start := time.Now()
	bo.do(t, "POST", "/api/orders", map[string]any{"truck": "truck-1", "id": "o-live", "address": "Quay",
		"lat": 51.5, "lon": -0.1, "radius_m": 80}, http.StatusCreated)
	deadline := time.After(10 * time.Second)
	event := ""
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the event stream ended")
			}
			if name, found := strings.CutPrefix(l, "event: "); found {
				event = name
			}
			if data, found := strings.CutPrefix(l, "data: "); found && event == "order" && strings.Contains(data, `"o-live"`) {
				t.Logf("office A's console got office B's order %v after B's answer", time.Since(start).Round(time.Millisecond))
				return
			}
		case <-deadline:
			t.Fatal("office A's console never got the order office B created")
		}
	}
}

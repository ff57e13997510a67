package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	crashChildEnv = "WAYBILL_STORE_CRASH_CHILD" // path of the store the child writes
	crashCycleEnv = "WAYBILL_STORE_CRASH_CYCLE"
	crashWriters  = 4
)

// crashChild appends and acks in a loop until it is killed. It prints "A <payload> <seq>" after each
// Append returned and "K <seq>" before each Ack, one write(2) per line, so the parent knows what was
// promised.
func crashChild() {
	path, cycle := os.Getenv(crashChildEnv), os.Getenv(crashCycleEnv)
	s, err := Open(path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		os.Exit(3)
	}
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format+"\n", args...)
		outMu.Lock()
		os.Stdout.WriteString(line)
		outMu.Unlock()
	}
	ctx := context.Background()
	for g := range crashWriters {
		go func() {
			for n := 0; ; n++ {
				p := fmt.Sprintf("c%s-g%d-%06d", cycle, g, n)
				lane := Normal
				if n%5 == 0 {
					lane = Critical
				}
				seq, err := s.Append(ctx, Entry{Lane: lane, Data: []byte(p)})
				if err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(4)
				}
				say("A %s %d", p, seq[0])
			}
		}()
	}
	for {
		recs, err := s.Peek(ctx, 7)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child peek:", err)
			os.Exit(5)
		}
		var ack []uint64
		for i, r := range recs {
			if i%2 == 0 {
				ack = append(ack, r.Seq)
				say("K %d", r.Seq)
			} else {
				s.Release(r.Seq)
			}
		}
		if err := s.Ack(ctx, ack...); err != nil {
			fmt.Fprintln(os.Stderr, "child ack:", err)
			os.Exit(6)
		}
		time.Sleep(time.Millisecond)
	}
}

// childCommand runs this test binary as a crash child, through the emulator when the tests run under one.
func childCommand(path string, cycle int) *exec.Cmd {
	args := []string{os.Args[0], "-test.run=^$"}
	if emu := os.Getenv("WAYBILL_TEST_EXEC"); emu != "" {
		args = append([]string{emu}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path, crashCycleEnv+"="+strconv.Itoa(cycle))
	return cmd
}

// TestPowerCutLosesNothing kills a writing, acking child with SIGKILL at random moments, 50 times, and
// checks after each restart that every record whose Append had returned is present exactly once, unless an
// Ack for it was issued, and that order holds.
func TestPowerCutLosesNothing(t *testing.T) {
	const kills = 50
	path := t.TempDir() + "/queue.db"
	rng := rand.New(rand.NewPCG(1, 2))
	promised := map[string]uint64{} // payload -> seq, for every Append that returned
	ackRequested := map[uint64]bool{}
	totalAppends, totalAcks := 0, 0

	for cycle := range kills {
		cmd := childCommand(path, cycle)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		var readWG sync.WaitGroup
		readWG.Add(1)
		go func() {
			defer readWG.Done()
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// Let it get going (start-up under an emulator is slow), then kill at a random moment.
		var got []string
		deadline := time.After(60 * time.Second)
		for len(got) < 5 {
			select {
			case l, ok := <-lines:
				if !ok {
					cmd.Wait()
					t.Fatalf("cycle %d: child exited early: %s", cycle, stderr.String())
				}
				got = append(got, l)
			case <-deadline:
				cmd.Process.Kill()
				t.Fatalf("cycle %d: child wrote nothing: %s", cycle, stderr.String())
			}
		}
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for l := range lines {
			got = append(got, l)
		}
		readWG.Wait()
		cmd.Wait()

		for _, l := range got {
			f := strings.Fields(l)
			switch {
			case len(f) == 3 && f[0] == "A":
				seq, _ := strconv.ParseUint(f[2], 10, 64)
				promised[f[1]] = seq
				totalAppends++
			case len(f) == 2 && f[0] == "K":
				seq, _ := strconv.ParseUint(f[1], 10, 64)
				ackRequested[seq] = true
				totalAcks++
			}
		}
		verifyAfterCrash(t, path, cycle, promised, ackRequested)
	}
	t.Logf("%d SIGKILLs, %d appends returned, %d acks issued: nothing lost, nothing doubled, order kept",
		kills, totalAppends, totalAcks)
}

func verifyAfterCrash(t *testing.T, path string, cycle int, promised map[string]uint64, ackRequested map[uint64]bool) {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("cycle %d: reopen after kill: %v", cycle, err)
	}
	defer s.Close()
	recs, err := s.Peek(context.Background(), 1<<30)
	if err != nil {
		t.Fatalf("cycle %d: %v", cycle, err)
	}
	present := map[string]uint64{}
	lastOf := map[string]string{} // writer (cycle+goroutine) -> last payload seen, in peek order per lane
	for _, r := range recs {
		p := string(r.Data)
		if _, dup := present[p]; dup {
			t.Fatalf("cycle %d: payload %s stored twice", cycle, p)
		}
		present[p] = r.Seq
		writer := p[:strings.LastIndex(p, "-")] + "/" + r.Lane.String()
		if prev, ok := lastOf[writer]; ok && prev >= p {
			t.Fatalf("cycle %d: order broken in %s: %s after %s", cycle, writer, p, prev)
		}
		lastOf[writer] = p
	}
	for p, seq := range promised {
		got, ok := present[p]
		if !ok && !ackRequested[seq] {
			t.Fatalf("cycle %d: LOST %s (seq %d): Append returned, never acked, not in the store", cycle, p, seq)
		}
		if ok && got != seq {
			t.Fatalf("cycle %d: %s has seq %d, Append returned %d", cycle, p, got, seq)
		}
	}
	if st := s.Stats(); st.Quarantined != 0 || st.Recovered != 0 {
		t.Fatalf("cycle %d: kill -9 damaged the file: %+v", cycle, st)
	}
}

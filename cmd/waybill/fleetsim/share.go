package fleetsim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

// share is the parent's end of a part of the fleet: a worker process, or the trucks in this process.
type share struct {
	name   string         // for messages: "worker 2 of 3 (pid 1234)"
	orders io.WriteCloser // JSON lines: the spec, then the orders

	ready, driven, done chan struct{} // closed at its Ready and Driven reports, and when it has ended

	mu             sync.Mutex
	last           report  // the latest counts
	connectedAtEnd int     // from its Driven report
	final          *report // its Final report
	tail           tail    // the end of a worker's stderr
}

// startShare starts the k-th share of the fleet, in this process when there is one share, and sends it
// its spec. wg owns its goroutines; the share ends when s.killCtx does at the latest.
func (s *sim) startShare(k int, wg *sync.WaitGroup) (*share, error) {
	sh := &share{ready: make(chan struct{}), driven: make(chan struct{}), done: make(chan struct{})}
	if s.workers == 1 {
		s.startLocal(sh, wg)
	} else if err := s.startProcess(sh, k, wg); err != nil {
		return nil, err
	}
	sp := spec{Config: s.cfg, Share: k, Shares: s.workers, BrokerAddr: s.brokerAddr, LogLevel: lowestLevel(s.cfg.Logger)}
	sp.Config.Progress, sp.Config.Logger, sp.Config.WorkerArgs = nil, nil, nil
	json.NewEncoder(sh.orders).Encode(sp) // a share that cannot take it has ended: its reader says why
	return sh, nil
}

// startLocal runs the share in this process, through the same protocol over in-memory pipes.
func (s *sim) startLocal(sh *share, wg *sync.WaitGroup) {
	sh.name = "the in-process trucks"
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	sh.orders = inW
	wg.Add(2)
	go func() {
		defer wg.Done()
		outW.CloseWithError(work(s.killCtx, inR, outW, s.cfg.Logger, false))
	}()
	go func() {
		defer wg.Done()
		err := s.readReports(sh, outR)
		outR.CloseWithError(errors.New("fleetsim: the parent stopped reading")) // a report still being written fails
		s.conclude(sh, err)
	}()
}

// startProcess starts a worker: this program again (Config.WorkerArgs) with WorkerEnv set. It is
// killed when s.killCtx ends, and when this process dies (workerAttr).
func (s *sim) startProcess(sh *share, k int, wg *sync.WaitGroup) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("fleetsim: starting a worker: %w", err)
	}
	cmd := exec.CommandContext(s.killCtx, exe, s.cfg.WorkerArgs...)
	cmd.Env = append(os.Environ(), WorkerEnv+"=1")
	cmd.SysProcAttr = workerAttr()
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("fleetsim: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("fleetsim: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return fmt.Errorf("fleetsim: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("fleetsim: starting worker %d of %d (%s): %w", k+1, s.workers, exe, err)
	}
	sh.name = fmt.Sprintf("worker %d of %d (pid %d)", k+1, s.workers, cmd.Process.Pid)
	sh.orders = stdin
	stderrDone := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer close(stderrDone)
		s.readStderr(sh, stderr)
	}()
	go func() {
		defer wg.Done()
		err := s.readReports(sh, stdout)
		if err != nil {
			cmd.Process.Kill() // it failed, or its output is garbled: nothing more it says counts
		}
		io.Copy(io.Discard, stdout) // Wait closes the pipe: read it to the end first
		<-stderrDone
		if werr := cmd.Wait(); werr != nil {
			err = errors.Join(err, werr)
		}
		s.conclude(sh, err)
	}()
	return nil
}

// readReports reads a share's reports until they end: nil at their end, the share's error if it
// reported one.
func (s *sim) readReports(sh *share, r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var rep report
		if err := dec.Decode(&rep); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading its reports: %w", err)
		}
		if rep.Err != "" {
			return errors.New(rep.Err)
		}
		for _, c := range rep.Commits {
			s.c.committed(c.Key, time.Unix(0, c.At))
		}
		rep.Commits = nil
		sh.mu.Lock()
		sh.last = rep
		switch {
		case rep.Ready:
			closeOnce(sh.ready)
		case rep.Driven:
			sh.connectedAtEnd = rep.Connected
			closeOnce(sh.driven)
		case rep.Final:
			sh.final = &rep
		}
		sh.mu.Unlock()
	}
}

// closeOnce closes ch unless it is closed: a worker repeating a report does not crash the parent.
// Its callers hold the share's lock.
func closeOnce(ch chan struct{}) {
	select {
	case <-ch:
	default:
		close(ch)
	}
}

// conclude ends a share: a failure unless it sent its final report and ended cleanly.
func (s *sim) conclude(sh *share, err error) {
	sh.mu.Lock()
	final := sh.final != nil
	sh.mu.Unlock()
	if err == nil && !final {
		err = errors.New("it ended without its final counts")
	}
	if err != nil {
		if s.killCtx.Err() != nil {
			err = fmt.Errorf("%w (stopped: the run was ending)", err)
		}
		msg := fmt.Sprintf("fleetsim: %s failed: %v", sh.name, err)
		if t := sh.tail.String(); t != "" {
			msg += "; its stderr ends with:\n" + t
		}
		s.fail(errors.New(msg))
	}
	close(sh.done)
}

// readStderr keeps the end of a worker's stderr for a failure's message and passes its log lines
// (slog's JSON) on to Config.Logger, with the worker's name.
func (s *sim) readStderr(sh *share, r io.Reader) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if line = bytes.TrimSpace(line); len(line) > 0 {
			sh.tail.add(string(line))
			s.relog(sh.name, line)
		}
		if err != nil {
			return
		}
	}
}

func (s *sim) relog(worker string, line []byte) {
	var rec map[string]any
	if json.Unmarshal(line, &rec) != nil {
		s.cfg.Logger.Warn("fleetsim: worker stderr", "worker", worker, "line", string(line))
		return
	}
	var level slog.Level
	if l, _ := rec[slog.LevelKey].(string); level.UnmarshalText([]byte(l)) != nil {
		level = slog.LevelInfo
	}
	msg, _ := rec[slog.MessageKey].(string)
	for _, k := range []string{slog.TimeKey, slog.LevelKey, slog.MessageKey} {
		delete(rec, k)
	}
	args := []any{"worker", worker}
	for _, k := range slices.Sorted(maps.Keys(rec)) {
		args = append(args, k, rec[k])
	}
	s.cfg.Logger.Log(context.Background(), level, msg, args...)
}

// lowestLevel is the lowest level l takes, for a worker's logger; nil: none.
func lowestLevel(l *slog.Logger) *slog.Level {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		if l.Enabled(context.Background(), level) {
			return &level
		}
	}
	return nil
}

// tail keeps the last lines written to it, each cut to a length.
type tail struct {
	mu    sync.Mutex
	lines []string
}

const tailLines, tailLineLen = 30, 500

func (t *tail) add(line string) {
	if len(line) > tailLineLen {
		line = line[:tailLineLen] + "..."
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == tailLines {
		t.lines = slices.Delete(t.lines, 0, 1)
	}
	t.lines = append(t.lines, line)
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

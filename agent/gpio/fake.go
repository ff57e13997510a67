package gpio

import (
	"sync"
	"time"
)

// Fake is an injected Line for tests: Set changes its level and delivers the edge, as a bouncing contact
// or a cranking engine would.
type Fake struct {
	mu     sync.Mutex
	active bool
	closed bool
	edges  chan Edge
}

// NewFake returns a line at the given level with room for EdgeBuffer edges.
func NewFake(active bool) *Fake { return &Fake{active: active, edges: make(chan Edge, EdgeBuffer)} }

// Set changes the level at t and delivers the edge; beyond EdgeBuffer waiting edges it is dropped, as
// Input drops it.
func (f *Fake) Set(t time.Time, active bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.active = active
	select {
	case f.edges <- Edge{Time: t, Active: active}:
	default:
	}
}

// Active reads the level now.
func (f *Fake) Active() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active, nil
}

// Edges delivers the edges Set made; it is closed by Close.
func (f *Fake) Edges() <-chan Edge { return f.edges }

// Close closes Edges, as closing a real line does.
func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.closed {
		f.closed = true
		close(f.edges)
	}
	return nil
}

package transport

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/log"
)

// pinger is paho's DefaultPinger, fresh for each connection, that records a keep-alive failure as the reason
// the link ended (paho only passes it to an asynchronous error callback).
type pinger struct {
	debug log.Logger
	cur   atomic.Pointer[paho.DefaultPinger]
}

func (p *pinger) Run(ctx context.Context, conn net.Conn, keepAlive uint16) error {
	d := paho.NewDefaultPinger()
	d.SetDebug(p.debug)
	p.cur.Store(d)
	err := d.Run(ctx, conn, keepAlive)
	if l, ok := conn.(*link); ok && err != nil {
		l.note(fmt.Errorf("keep-alive: %w (dead link)", err))
	}
	return err
}

func (p *pinger) PacketSent() {
	if d := p.cur.Load(); d != nil {
		d.PacketSent()
	}
}

func (p *pinger) PacketReceived() {
	if d := p.cur.Load(); d != nil {
		d.PacketReceived()
	}
}

func (p *pinger) PingResp() {
	if d := p.cur.Load(); d != nil {
		d.PingResp()
	}
}

func (p *pinger) SetDebug(l log.Logger) { p.debug = l }

package gpssim

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// PTY is a pseudo-terminal standing in for a receiver's serial port: the simulator writes to Master and
// a reader opens Path (the slave side) like any serial device.
type PTY struct {
	Master *os.File
	Path   string
	slave  *os.File
}

// OpenPTY creates a pseudo-terminal in raw mode. The slave is kept open by the PTY so the line stays up
// while readers close and reopen it; Close releases both sides, which a reader sees as a hang-up.
func OpenPTY() (*PTY, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("gpssim: open pty: %w", err)
	}
	// Raw: no echo back into the master (it would fill up, nobody reads it), no CR/LF translation.
	t, err := unix.IoctlGetTermios(int(s.Fd()), unix.TCGETS)
	if err == nil {
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		err = unix.IoctlSetTermios(int(s.Fd()), unix.TCSETS, t)
	}
	if err != nil {
		m.Close()
		s.Close()
		return nil, fmt.Errorf("gpssim: raw mode on %s: %w", s.Name(), err)
	}
	// pty.Open hands the master back in blocking mode (it used Fd): a write then blocks for good while
	// nobody reads, and neither a deadline nor Close can end it. A non-blocking copy goes through Go's
	// poller, where both work.
	fd, err := unix.Dup(int(m.Fd()))
	if err == nil {
		if err = unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		m.Close()
		s.Close()
		return nil, fmt.Errorf("gpssim: pty master: %w", err)
	}
	m.Close()
	return &PTY{Master: os.NewFile(uintptr(fd), "/dev/ptmx"), Path: s.Name(), slave: s}, nil
}

// Close closes both sides.
func (p *PTY) Close() error {
	err := p.Master.Close()
	if err2 := p.slave.Close(); err == nil {
		err = err2
	}
	return err
}

package pgtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// BinDir is where Debian's postgresql-15 package puts initdb, pg_ctl and postgres.
const BinDir = "/usr/lib/postgresql/15/bin"

// Cluster is a running throwaway cluster.
type Cluster struct {
	Dir  string // data in Dir/data, the socket in Dir
	Port int

	cred *syscall.Credential // the postgres user when running as root

	mu sync.Mutex // guards n
	n  int        // databases made
}

// Start runs initdb and pg_ctl start; the cluster is stopped and its directory removed when t ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	initdb := filepath.Join(BinDir, "initdb")
	if _, err := os.Stat(initdb); err != nil {
		t.Fatalf("pgtest: PostgreSQL 15 is not installed (%v): apt-get install -y postgresql", err)
	}
	dir, err := os.MkdirTemp("", "waybill-pg-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Dir: dir, Port: freePort(t)}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgtest: running as root needs the postgres user (%v): apt-get install -y postgresql", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	c.run(t, initdb, "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
	opts := fmt.Sprintf("-c listen_addresses='' -k %s -p %d -c fsync=off -c full_page_writes=off "+
		"-c shared_buffers=32MB -c max_connections=50", dir, c.Port)
	c.run(t, filepath.Join(BinDir, "pg_ctl"), "start", "-w", "-t", "60", "-D", data,
		"-l", filepath.Join(dir, "log"), "-o", opts)
	t.Cleanup(func() {
		cmd := exec.Command(filepath.Join(BinDir, "pg_ctl"), "stop", "-m", "immediate", "-w", "-D", data)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("pgtest: pg_ctl stop: %v\n%s", err, out)
		}
	})
	return c
}

func (c *Cluster) run(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	cmd.Dir = c.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(c.Dir, "log"))
		t.Fatalf("pgtest: %s: %v\n%s\n%s", filepath.Base(name), err, out, log)
	}
}

// DSN is the connection string of database db.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=%s sslmode=disable", c.Dir, c.Port, db)
}

// Database creates a new empty database and returns its DSN.
func (c *Cluster) Database(t testing.TB) string {
	t.Helper()
	c.mu.Lock()
	c.n++
	name := fmt.Sprintf("db%d", c.n)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return c.DSN(name)
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

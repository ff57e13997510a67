// Package pgtest starts a throwaway PostgreSQL cluster for tests: initdb and pg_ctl from Debian's
// postgresql package (PostgreSQL 15, /usr/lib/postgresql/15/bin) in a temporary directory, run as the
// postgres user when the test runs as root, listening only on a unix socket in that directory. A missing
// PostgreSQL fails the test with the install command; it never skips.
//
// # Basics
//
//	c := pgtest.Start(t)   // stopped and removed when the test ends
//	dsn := c.Database(t)   // a new, empty database on it
package pgtest

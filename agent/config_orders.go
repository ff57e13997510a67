package agent

import "time"

// OrdersConfig is the truck's order book.
type OrdersConfig struct {
	// KeepClosed is how long a delivered, failed, cancelled or expired order stays in the book (and on the
	// driver's page history) before it is removed. Zero: 30 days.
	KeepClosed time.Duration `toml:"keep_closed"`
}

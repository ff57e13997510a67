// Package boards describes the units waybill-agent is flashed onto: for each board, the Go target
// (GOARCH/GOARM), the GPS serial device and baud rate, the GPIO lines of the driver's button and LED, the
// data directory and the service manager. Profiles are TOML files in boards/<name>/profile.toml, embedded in
// the binary; the service files beside them (waybill-agent.service for systemd, waybill-agent.init for
// OpenWrt's procd) are installed by `make dist BOARD=<name>`.
package boards

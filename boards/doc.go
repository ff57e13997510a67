// Package boards describes the units waybill-agent is flashed onto: for each board, the Go target
// (GOARCH/GOARM), the GPS serial device and baud rate, the GPIO lines of the driver's button and LED and of
// the ignition-sense input (where the board documents one), the data directory and the service manager.
// Profiles are TOML files in boards/<name>/profile.toml, embedded in the binary; Lookup reads one, and an
// unknown name says which boards exist (and the closest one).
//
// Beside the profiles: agent.example.toml (every configuration key with its default and range), the
// service files (waybill-agent.service for systemd, waybill-agent.init for OpenWrt's procd), the GPIO
// drop-in waybill-agent-gpio.conf and udev rule 90-waybill-gpio.rules, and INSTALL.md. `make dist
// BOARD=<name>` packs them, with waybill-agent and waybill built for the board, into
// waybill-agent-<name>-<version>.tar.gz.
//
// # Caveats
//
// The unit names only group dialout in SupplementaryGroups: group gpio exists on Raspberry Pi OS and the
// BeagleBoard images but not on plain Debian, and systemd refuses to start a unit naming a missing group
// (216/GROUP). GPIO access is the drop-in's job, installed after the group is made sure of (INSTALL.md).
// `systemd-analyze verify` cannot catch that, so a test checks the unit's groups itself.
package boards

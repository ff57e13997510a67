// Package vm runs waybill-agent on a real ARM Linux kernel: the virtual truck. It is a test harness, a tool
// beside the waybill command (design.md), not part of the library; its tests are `make vm-test`.
//
// # Basics
//
// qemu-system-aarch64 boots Debian's arm64 kernel on the virt board under TCG (or, for ARMv7,
// qemu-system-arm boots Debian's armhf armmp kernel on a Cortex-A15), with an initramfs of busybox-static,
// the static agent and the kernel modules it needs (virtio-mmio, the disk, the console, the network, ext4):
//
//	a, err := vm.Fetch(ctx, dir, vm.ARM64, logf)   // apt: qemu-system-arm, e2fsprogs, the kernel, busybox
//	err = vm.BuildAgent(ctx, repo, agent, a.Arch)  // GOOS=linux GOARCH=arm64 CGO_ENABLED=0
//	err = vm.WriteInitramfs(initrd, a, agent)      // newc cpio, uncompressed
//	err = vm.MakeDisk(ctx, disk, 64, src)          // ext4 with /etc (agent.toml, PKI) and /data
//	m, err := vm.Start(ctx, vm.Config{Arch: a.Arch, Kernel: a.Kernel, Initrd: initrd, Disk: disk, Dir: dir, HTTPPort: p})
//	uart, err := m.DialUART(ctx)                   // write NMEA: the guest reads it on /dev/ttyAMA0
//	out, code, err := m.Exec(ctx, "stty -F /dev/ttyAMA0") // busybox sh in the guest
//	err = m.Powerdown(ctx)                         // the power button: PL061 line 3, /dev/gpiochip0
//	m.Kill()                                       // the power cut: SIGKILL of QEMU, waited for
//
// The board:
//
//   - The data directory is on an ext4 image on a virtio disk (/dev/vda, mounted on /truck), with the
//     agent's configuration and the truck's PKI files in /truck/etc. Config.Cache picks QEMU's cache mode.
//   - The PL011 UART (/dev/ttyAMA0) is a unix socket on the host: it carries only NMEA. The kernel log and
//     the agent's output go to the virtio console (hvc0), a file on the host (Machine.Console).
//   - A busybox sh on a virtio serial port (another unix socket) runs Machine.Exec's scripts, so a test
//     reads the guest's /proc and termios. The agent's pid is in /tmp/agent.pid.
//   - With Config.Trace "pl011_baudrate_change", Machine.UARTRates lists the rates the guest's driver
//     programmed into the PL011.
//   - The clock starts at 2001-01-01 (-rtc base=): 25 years wrong, as on a unit without an RTC battery.
//   - QEMU's user network, restricted (restrict=on): the guest (10.0.2.15) reaches only the host addresses
//     that Config.Forwards lists, each at GuestRelay:port (the broker's certificate must name GuestRelay),
//     through Config.Relay, a program QEMU runs per connection (the test binary itself; see Relay). The
//     gateway, QEMU's DNS, the host's other ports and the world beyond are refused (TestNetworkIsLocal).
//     The host reaches the guest's port 8080 on 127.0.0.1:Config.HTTPPort.
//   - With -machine virt,acpi=off, the monitor's system_powerdown pulses PL061 line 3 high for 100 ms.
//     The arm64 kernel's gpio-keys driver is a module that the initramfs does not load; the armmp kernel
//     has it built in, and /init unbinds it. Either way the line is free for the agent's button.
//
// Fetch caches in CacheDir (never the repository) and installs what is missing when run as root; otherwise
// it fails with ErrMissing and the exact command. A second run downloads nothing.
//
// # Caveats
//
//   - A SIGKILL of QEMU loses what the guest had not yet handed to the virtio disk (its page cache and
//     ext4's uncommitted journal): the power cut of the unit. What QEMU had written survives in the host's
//     page cache whatever the cache mode, since the host itself does not crash.
//   - TCG emulates the CPU: the agent runs several times slower than on a Cortex-A72, and the CPU seconds
//     the guest counts (BenchmarkFootprint's cpu-s/h) are emulated ones: an upper bound for the unit.
//   - The UART's chardev carries bytes, not a line: whatever rate the guest sets, every byte arrives
//     intact, with no framing, parity, break or overrun errors, and at any speed (QEMU stops reading the
//     socket while the PL011's FIFO is full, so nothing is lost either). A test that wants a wrong rate to
//     look wrong must garble the bytes itself (TestUART does, from UARTRates).
package vm

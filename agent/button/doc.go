// Package button turns a hardware button on a GPIO line into the driver's acknowledgements, and drives an
// LED next to it.
//
// # Basics
//
//	line, err := button.OpenLine(button.GPIOConfig{Chip: "gpiochip0", Line: 17}) // active-low, pull-up
//	led, err := button.OpenLED(button.LEDConfig{Chip: "gpiochip0", Line: 27})
//	b, err := button.New(button.Config{Line: line, LED: led, Orders: client.Book(), Position: latestFix})
//	// truck.ClientConfig.OnOrder: b.Notify (and the driver page's Notify)
//	err = b.Run(ctx) // then line.Close(), led.Close()
//
// A press acts on the selected order: by default (Nearest) the active order nearest to the latest fix, or
// the oldest received active order when there is no fix; the driver page marks the same order Next. The
// button reads only the active orders (the order book's Active, an index read), never the closed history, so
// a press and the LED cost the same after a year of deliveries.
//
//   - Short press (released before LongPress, 2 s): delivered, via button.
//   - Long press (held for LongPress): a problem with reason "button: long press", via button. It fires
//     when the time is reached, not at release, so the LED answers while the button is still held.
//
// Each press goes through the order book's Act, which writes the signed proof (with the latest fix, and
// the off-site flag) to the store's critical lane before it returns.
//
// Edges are debounced: a level counts once it has held for Debounce (30 ms), so contact bounce and short
// glitches from a long cable are ignored, and a press is at least Debounce long. A button already held
// when Run starts (or stuck, or shorted) fires nothing until it has been released.
//
// # The LED
//
// In order of precedence:
//
//   - fast blink (5 Hz) for ErrorHold (2 s) after a press that recorded nothing: no active order, or the
//     store failed;
//   - steady on for AckHold (3 s) after a press was recorded; presses during that time are ignored, so a
//     driver who presses twice does not deliver the next order as well;
//   - slow blink (1 Hz) while at least one order is active, that is, waits for the driver;
//   - off when no order is active.
//
// # Hardware
//
// OpenLine and OpenLED use the Linux GPIO character device through github.com/warthog618/go-gpiocdev
// (uAPI v2 from Linux 5.10, v1 before; the input line is agent/gpio's, shared with the ignition sense, and
// tests inject its gpio.Fake): the button's line as an input with both edges, active-low with
// the internal pull-up by default (a button between the pin and ground); the LED's line as an output. Edges
// are stamped with the Button's clock when gpiocdev delivers them. Off Linux both return an error.
//
// # Caveats
//
//   - The press logic and the LED are tested here with an injected line and times (contact bounce
//     included); the gpiocdev code runs against a real GPIO chip in cmd/waybill/vm TestButton: QEMU's PL061 under
//     Debian's arm64 and armhf kernels, a short press, repeated presses and a held button. Real contact
//     bounce on a GPIO chip is not shown there (QEMU's button pulse is at least 100 ms).
//   - A short press acts on the nearest active order wherever the truck is; a delivery far from the
//     destination is flagged off-site in the proof, not refused.
//   - Edges beyond a buffer of 256 waiting for the Button are dropped and counted (GPIOLine.Dropped);
//     a later edge carries the level, so the state recovers.
package button

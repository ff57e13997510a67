// Package gpssim simulates a GNSS receiver in a delivery truck, for the demo, tests and `waybill gps
// sim`.
//
// # Basics
//
// NewRoute builds a deterministic loop of streets on a grid from a start point and a seed: cruise speed
// on the straights, slow corners, a delivery stop every few streets, and one tunnel. New wraps it in a
// receiver that writes u-blox style multi-constellation NMEA (GNRMC, GNVTG, GNGGA, one GNGSA per system,
// GPGSV, GLGSV, GNGLL, GNZDA) with occasional lost fixes. Sim.Epoch is pure; Sim.Run writes at real speed
// (times Speedup). OpenPTY gives a pseudo-terminal whose slave path a serial reader opens like a device.
//
// # Caveats
//
// Positions use an equirectangular projection around the start: exact enough for a few kilometres, not
// for a cross-country route. Satellites and DOPs are fixed values.
package gpssim

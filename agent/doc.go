// Package agent wires the truck's daemon together: GPS source, reporting filter, durable store, uploader,
// order book and the driver's page and button. It only wires; each stage is its own type.
//
// The daemon itself is built in issue 5 ("waybill-agent: the in-truck daemon"); this package is empty until then.
package agent

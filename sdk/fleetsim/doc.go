// Package fleetsim runs a fleet of simulated trucks against a real broker, for load tests and for
// `waybill fleet sim`.
//
// Each simulated truck is the real truck client (sdk/truck) with its own store file, its own certificate
// and its own mutual-TLS connection. It drives a generated city loop (gps/gpssim) at 1 Hz through the
// agent's default reporting filter and commit policy (fixes wait for 30 of them or 30 s, then share one
// commit) and, optionally, confirms a delivery at every stop. With Config.Dispatch the dispatch side runs
// too: the verified consumer with its durable archive, receipting what it committed, so the trucks' stores
// drain as they would in production.
//
// Faults: Config.StallDispatch (dispatch stops reading for a while: the broker queues its session),
// Config.RestartBrokerAt (a broker the simulation started is stopped and started again), Config.DropLink
// (a share of the trucks reaches the broker through a proxy that cuts their links for a while).
//
// Run ends by itself: it drives for Config.Duration, then stops the trucks' GPS and waits (up to
// Config.Drain) until every truck's store is empty, and returns a Summary. Lost is what a truck stored
// that dispatch never received and no truck still holds: the promise is that it is zero.
package fleetsim

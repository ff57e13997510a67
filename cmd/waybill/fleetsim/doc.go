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
// # The broker
//
// By default the simulation makes its own PKI in Dir/pki, configures a Mosquitto for the fleet's size
// with sdk/brokerconf and starts it on a loopback port. With Config.Broker it runs against a broker that
// is already running, configured by `waybill broker config` from the fleet PKI in Config.PKIDir: it
// issues its identities into that PKI (Config.NamePrefix, "sim-": trucks sim-00001 ..., dispatch
// sim-dispatch; a later run reuses them), then tells the broker as `waybill broker sync` does, through
// its dynamic security plugin (sdk/brokeradmin). The plugin rewrites its whole file at every identity it
// learns, so a first run of thousands of new trucks spends minutes there: issue them beforehand with
// `waybill pki issue --role truck --count N --name-prefix sim-`, render the configuration with `waybill
// broker config` and restart the broker, and the simulation finds every identity known. It cannot
// restart a broker it did not start (RestartBrokerAt is refused) and does not measure it (BrokerRSS and
// BrokerCPU are absent from the summary). The dispatch side is refused when the PKI holds trucks that
// are not the simulation's: it subscribes to the whole fleet, would receipt the real trucks' events it
// can verify (a receipt lets a truck delete a record: only the office's dispatch may give one) and they
// re-send what they hold whenever it connects. A dispatch of the fleet's own on that broker receives the
// simulated trucks like any other (their deliveries name orders sim-...). Their sessions and retained
// statuses stay on the broker after the run, as any truck's do.
//
// Run ends by itself: it drives for Config.Duration, then stops the trucks' GPS and waits (up to
// Config.Drain) until every truck's store is empty, and returns a Summary. Lost is what a truck stored
// that dispatch never received and no truck still holds: the promise is that it is zero.
//
// # Worker processes
//
// A truck holds two open files in its process (its socket and its store file; one behind the drop-link
// proxy two more), so one process cannot hold a fleet larger than about half its RLIMIT_NOFILE: 10,000
// trucks do not fit under this machine's 20,000 hard limit, which not even root can raise. Run raises the
// soft limit to the hard one (Mosquitto and the workers inherit it; Run refuses to start a Mosquitto whose
// limit is below the fleet plus 1,024) and, with Config.Workers zero, spreads the trucks over as many
// worker processes as keep each under a third of the limit in trucks (filesPerTruck): every truck in
// this process up to about 6,500 trucks, two workers for 10,000.
//
// A worker is this program started again (os.Executable, Config.WorkerArgs) with WorkerEnv set; it calls
// RunWorker. It runs every Workers-th truck (its index modulo Workers), each started at its place in the
// whole fleet's order, with its own stores, client, mutual-TLS connection and drop-link proxy; the
// certificates are issued once, by the parent, and read from Dir/pki. The parent keeps the broker, the
// dispatch side and the fault schedule (stall, broker restart) and talks to its workers in JSON lines: a
// spec and the orders Start, EndDrive and Finish on the worker's stdin; Ready, counts every second (with
// the commits made since, whose keys dispatch's receipts are matched to for the newest-fix latency),
// Driven and Final (each truck's connection times, failed attempts and what its store holds, and the
// worker's peak memory) on its stdout. With one process the same protocol runs over in-memory pipes.
// Summary.SimRSS is a sum of peaks, the parent's and each worker's; DispatchRSS is the parent's alone.
// Summary's CPU times come from /proc/PID/stat: the broker's, the parent's (DispatchCPU) and the workers'
// (each reports its own with its final counts; TrucksCPU is their sum).
//
// A worker that dies, reports an error or exits badly after reporting ends the run with an error naming
// it and quoting the end of its stderr (its logs, slog's JSON, are passed on to Config.Logger). The
// workers run in their own process group, so a terminal's Ctrl-C reaches only the parent, which ends the
// drive and still collects their counts (within finishGrace); they are killed when Run returns, and by
// the kernel (Pdeathsig) when the parent dies; they also end when their stdin does.
package fleetsim

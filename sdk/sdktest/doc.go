// Package sdktest starts real brokers for tests: Mosquitto (StartMosquitto) and the development broker
// (StartDevBroker), each with a fleet PKI made by sdk/pki and, for Mosquitto, the configuration and ACL
// made by sdk/brokerconf, on a free loopback port. Both are stopped when the test ends.
//
// # Basics
//
//	b := sdktest.StartMosquitto(t, sdktest.Options{Dispatch: []string{"office"}})
//	truck := b.Truck("truck-a")
//	conn, err := b.Dial(ctx, truck.TLSConfig(t)) // give it to paho.ClientConfig.Conn
//
// Start(t, kind, opts) with Kinds runs one table of cases against both brokers. Broker.Kill (kill -9),
// Stop, Start and Restart keep the port and Mosquitto's persistence directory, for reconnect and
// persistence tests. Broker.Reload regenerates Mosquitto's ACL and CRL and sends SIGHUP; Issue calls it
// for dispatch certificates. MosquittoArgs gives mosquitto_pub/mosquitto_sub the flags to connect as a
// client.
//
// # Caveats
//
//   - A missing Mosquitto fails the test with "apt-get install mosquitto"; it never skips.
//   - Mosquitto runs natively even when the test binary runs under qemu-arm-static: it is a separate
//     process, not the test binary.
//   - Mosquitto learns dispatch names only from its ACL file: issue dispatch identities through Options or
//     Broker.Issue, which reload it. Revocations need Broker.Reload too (the development broker notices
//     the CRL file change by itself).
//   - The free port is found by binding port 0 and closing it, so another process could take it first;
//     the test then fails with Mosquitto's log.
package sdktest

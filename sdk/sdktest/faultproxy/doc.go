// Package faultproxy is a fault-injecting TCP proxy for tests: it sits between a client and a real server
// (an MQTT broker) and misbehaves on command, like a cellular link.
//
// # Basics
//
// Start listens on 127.0.0.1:0 and forwards each accepted connection to Config.Target. Faults can be switched
// at any time and apply to connections already open:
//
//	p, _ := faultproxy.Start(faultproxy.Config{Target: brokerAddr})
//	defer p.Close(ctx)
//	p.SetLatency(50 * time.Millisecond) // 100 ms round trip
//	p.SetBandwidth(32 << 10)            // 32 KiB/s each way
//	p.SetFailFraction(0.3)              // 30 % of new connections reset at once
//	p.SetBlackHole(true)                // stop forwarding, no FIN
//	p.DropAll()                         // reset every open connection now (mid-publish)
//	p.Pass()                            // back to a good link
//
// Latency is a pipeline: each chunk read is stamped with its delivery time and a separate writer delivers it
// then, so a 100 ms round trip does not cap throughput at one chunk per round trip.
//
// # Caveats
//
// Faults act on chunks as read from the socket, not on IP packets: a black hole holds data (like TCP
// retransmitting into a dead route) and delivers it when lifted, if the endpoints have not given up; the
// bandwidth limit paces writes per connection and direction, not across connections. Close waits for every
// goroutine the proxy started.
package faultproxy
